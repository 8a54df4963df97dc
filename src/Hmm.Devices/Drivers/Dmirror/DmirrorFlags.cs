namespace Hmm.Drivers;

/// <summary>Test flags of one open mirror (<c>HMM_DMIRROR_FLAGS</c>), set with <see cref="Dmirror.SetFlags"/>.</summary>
[Flags]
public enum DmirrorFlags
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>
    /// One-shot: the next page allocation of a migration fails, and the flag clears
    /// (<c>HMM_DMIRROR_FLAG_FAIL_ALLOC</c>). To the device (<see cref="Dmirror.MigrateToDevice"/>): the page it
    /// was for is not migrated. Back to RAM (<see cref="Dmirror.MigrateToSystem"/>, or a CPU fault on a page this
    /// mirror migrated): that page and the rest of its migration round stay on the device;
    /// <see cref="Dmirror.MigrateToSystem"/> still returns <see cref="Errno.None"/> without counting them, and the
    /// CPU access fails with ENOMEM (<see cref="VmFaultResult.Oom"/>).
    /// </summary>
    FailAllocation = 1,
}
