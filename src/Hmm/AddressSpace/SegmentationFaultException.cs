namespace Hmm;

/// <summary>
/// A simulated CPU access the process may not make: no mapping, a protection violation, or (for
/// <see cref="IsBusError"/>) an access a fault handler could not satisfy. The kernel would deliver
/// <c>SIGSEGV</c> or <c>SIGBUS</c>; the simulator throws this and changes nothing.
/// </summary>
public sealed class SegmentationFaultException : HmmException
{
    /// <summary>Creates the exception (only the simulated CPU raises it).</summary>
    /// <param name="address">The faulting address.</param>
    /// <param name="isWrite">Whether the access was a write.</param>
    /// <param name="isBusError">True for <c>SIGBUS</c> rather than <c>SIGSEGV</c>.</param>
    /// <param name="reason">Why the access failed.</param>
    internal SegmentationFaultException(ulong address, bool isWrite, bool isBusError, string reason)
        : base(Errno.EFAULT, $"{(isBusError ? "SIGBUS" : "SIGSEGV")} on {(isWrite ? "write" : "read")} at 0x{address:x}: {reason}")
    {
        Address = address;
        IsWrite = isWrite;
        IsBusError = isBusError;
    }

    /// <summary>The faulting address.</summary>
    public ulong Address { get; }

    /// <summary>Whether the access was a write.</summary>
    public bool IsWrite { get; }

    /// <summary>True for <c>SIGBUS</c> (a fault handler failed), false for <c>SIGSEGV</c> (no mapping or no permission).</summary>
    public bool IsBusError { get; }
}
