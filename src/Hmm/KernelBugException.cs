namespace Hmm;

/// <summary>
/// A misuse that the kernel would catch with <c>BUG_ON</c> or <c>WARN_ON</c>: a page reference put below zero,
/// unlocking a page that is not locked, freeing a page that is still mapped. It reports a defect in the calling
/// driver, not a runtime condition to handle. The operation that detects it undoes its own partial effect
/// before throwing, so the page state stays consistent.
/// </summary>
public sealed class KernelBugException : HmmException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What invariant was broken, naming the page.</param>
    public KernelBugException(string message)
        : base(Errno.EINVAL, message)
    {
    }
}
