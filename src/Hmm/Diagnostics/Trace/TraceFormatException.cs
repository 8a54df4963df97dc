namespace Hmm;

/// <summary>
/// A trace file that is not a valid trace: empty, truncated, of another format or version, or corrupted. It is
/// invalid input, so it is an <see cref="HmmException"/> with <see cref="Errno.EINVAL"/> (docs/error-model.md,
/// rule 2), and it names the byte <see cref="Offset"/> in the file where the problem was found.
/// </summary>
public sealed class TraceFormatException : HmmException
{
    /// <summary>Creates the exception (only <see cref="TraceReader"/> raises it).</summary>
    /// <param name="offset">The byte offset in the file of the offending field, or of the incomplete header or record.</param>
    /// <param name="reason">What is wrong there.</param>
    internal TraceFormatException(long offset, string reason)
        : base(Errno.EINVAL, $"invalid trace at byte offset {offset}: {reason}")
    {
        Offset = offset;
    }

    /// <summary>The byte offset in the file where the problem was found.</summary>
    public long Offset { get; }
}
