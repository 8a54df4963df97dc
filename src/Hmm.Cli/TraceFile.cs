using System.Globalization;

namespace Hmm.Cli;

/// <summary>
/// The file <c>hmmsim --trace FILE</c> records the run into: created (or truncated) before the run starts, so a path
/// that cannot be written is a bad argument (exit 2) and no simulation runs; closed after the run, which writes the
/// trace's end record.
/// </summary>
internal static class TraceFile
{
    /// <summary>Creates the file and a writer over it; on failure, returns false and the one-line reason.</summary>
    public static bool TryCreate(string path, out TraceWriter? writer, out string? problem)
    {
        writer = null;
        problem = null;
        try
        {
            writer = TraceWriter.Create(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 1));
            return true;
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            problem = $"--trace '{path}' cannot be written: {error.Message.TrimEnd('.')}";
            return false;
        }
    }

    /// <summary>The summary line naming where the trace went and how many events it holds.</summary>
    public static string Summary(string path, long events) =>
        string.Create(CultureInfo.InvariantCulture, $"Trace: {events:N0} events written to {Path.GetFullPath(path)}");
}
