namespace Hmm;

/// <summary>
/// The one exception type the library throws for a failed simulated kernel operation. It carries the
/// kernel-style <see cref="Errno"/>. Whatever operation throws it leaves the simulated memory exactly as it
/// was before the call, unless the member's documentation says otherwise.
/// </summary>
public class HmmException : Exception
{
    /// <summary>Creates an exception with the given kernel-style error and message.</summary>
    /// <param name="error">The errno the kernel would return.</param>
    /// <param name="message">What went wrong, naming the offending value.</param>
    public HmmException(Errno error, string message)
        : base($"{error}: {message}")
    {
        Error = error;
    }

    /// <summary>Creates an exception with the given kernel-style error, message and cause.</summary>
    /// <param name="error">The errno the kernel would return.</param>
    /// <param name="message">What went wrong, naming the offending value.</param>
    /// <param name="innerException">The exception that caused this one.</param>
    public HmmException(Errno error, string message, Exception? innerException)
        : base($"{error}: {message}", innerException)
    {
        Error = error;
    }

    /// <summary>The kernel-style error code.</summary>
    public Errno Error { get; }
}
