namespace Hmm;

/// <summary>
/// The kernel-style error carried by every <see cref="HmmException"/>. Values are the Linux errno numbers,
/// so a simulated call that fails reports what the kernel would return (negated there, positive here).
/// </summary>
public enum Errno
{
    /// <summary>No error: the call succeeded (for calls that return their outcome, such as <c>HmmRange.Fault</c>).</summary>
    None = 0,

    /// <summary>Operation not permitted (for example a write request on a read-only mapping).</summary>
    EPERM = 1,

    /// <summary>No such entry (for example no device mapping after a migration).</summary>
    ENOENT = 2,

    /// <summary>No such process: the address space has exited.</summary>
    ESRCH = 3,

    /// <summary>Interrupted.</summary>
    EINTR = 4,

    /// <summary>I/O error (for example a device copy that failed).</summary>
    EIO = 5,

    /// <summary>No such device or address (for example a device range that overlaps System RAM).</summary>
    ENXIO = 6,

    /// <summary>Try again (a non-blocking notifier could not proceed).</summary>
    EAGAIN = 11,

    /// <summary>Out of memory, or a conflicting physical mapping (the kernel's answer to a pagemap overlap).</summary>
    ENOMEM = 12,

    /// <summary>Bad address: no mapping, or one that cannot be accessed this way.</summary>
    EFAULT = 14,

    /// <summary>Busy: a sequence changed, a page is referenced, or a range is in use.</summary>
    EBUSY = 16,

    /// <summary>Already exists.</summary>
    EEXIST = 17,

    /// <summary>No such device (the device or pagemap is gone or dying).</summary>
    ENODEV = 19,

    /// <summary>Invalid argument.</summary>
    EINVAL = 22,

    /// <summary>Value too large (a range whose end overflows).</summary>
    EOVERFLOW = 75,

    /// <summary>Operation not supported on this kind of memory.</summary>
    EOPNOTSUPP = 95,

    /// <summary>Timed out (a blocking wait ran out of time).</summary>
    ETIMEDOUT = 110,
}
