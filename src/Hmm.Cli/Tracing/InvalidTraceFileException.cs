namespace Hmm.Cli.Tracing;

/// <summary>A trace file the reader refused: names the file, and keeps the reader's message (which names the byte offset).</summary>
internal sealed class InvalidTraceFileException : Exception
{
    public InvalidTraceFileException(string path, TraceFormatException inner)
        : base($"'{path}' is not a valid trace: {WithoutErrno(inner)}", inner)
    {
        Offset = inner.Offset;
    }

    /// <summary>The byte offset in the file where the reader found the problem.</summary>
    public long Offset { get; }

    private static string WithoutErrno(HmmException error)
    {
        string prefix = error.Error + ": ";
        return error.Message.StartsWith(prefix, StringComparison.Ordinal) ? error.Message[prefix.Length..] : error.Message;
    }
}
