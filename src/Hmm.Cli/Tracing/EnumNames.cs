using System.Collections.Concurrent;

namespace Hmm.Cli.Tracing;

/// <summary>
/// The names of enum values, each formatted once: <see cref="Enum.ToString()"/> boxes the value, and an
/// exporter names an enum for almost every event. Each cache holds one entry per distinct value seen.
/// </summary>
internal static class EnumNames
{
    public static string Of<T>(T value)
        where T : struct, Enum =>
        Cache<T>.Names.TryGetValue(value, out string? name) ? name : Cache<T>.Names.GetOrAdd(value, value.ToString());

    private static class Cache<T>
        where T : struct, Enum
    {
        public static readonly ConcurrentDictionary<T, string> Names = new();
    }
}
