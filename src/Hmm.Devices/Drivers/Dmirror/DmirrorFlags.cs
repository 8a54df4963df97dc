namespace Hmm.Drivers;

/// <summary>Test flags of one open mirror (<c>HMM_DMIRROR_FLAGS</c>), set with <see cref="Dmirror.SetFlags"/>.</summary>
[Flags]
public enum DmirrorFlags
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>
    /// One-shot: the next device page allocation of a migration to the device fails, and the flag clears
    /// (<c>HMM_DMIRROR_FLAG_FAIL_ALLOC</c>). The page it was for is not migrated.
    /// </summary>
    FailAllocation = 1,
}
