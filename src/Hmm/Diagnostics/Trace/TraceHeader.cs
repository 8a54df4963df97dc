namespace Hmm;

/// <summary>What a trace file's header says, as validated by <see cref="TraceReader.ReadHeaderAsync"/>.</summary>
/// <param name="FormatVersion">The file format version (docs/trace-format.md); this library writes and reads <see cref="CurrentVersion"/>.</param>
/// <param name="StartTime">When the writer was created (UTC); each record's <see cref="TraceEvent.WallTicks"/> counts from it.</param>
public readonly record struct TraceHeader(ushort FormatVersion, DateTimeOffset StartTime)
{
    /// <summary>The format version this library writes and the only one it reads.</summary>
    public const ushort CurrentVersion = TraceFormat.Version;
}
