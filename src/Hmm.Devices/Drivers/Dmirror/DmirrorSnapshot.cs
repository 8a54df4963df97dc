namespace Hmm.Drivers;

/// <summary>
/// One page's state in a <see cref="Dmirror.Snapshot"/> (the kernel test driver's <c>HMM_DMIRROR_PROT_*</c> bytes).
/// A byte is <see cref="Error"/> alone, <see cref="None"/> alone, or a page type (<see cref="Zero"/>, one of the
/// device values, or 0 for an ordinary page) combined with exactly one of <see cref="Read"/> and <see cref="Write"/>,
/// and optionally <see cref="Pmd"/> or <see cref="Pud"/>.
/// </summary>
public enum DmirrorSnapshot : byte
{
    /// <summary>Nothing valid is mapped there (<c>HMM_DMIRROR_PROT_NONE</c>).</summary>
    None = 0x00,

    /// <summary>Mapped read-only.</summary>
    Read = 0x01,

    /// <summary>Mapped writable.</summary>
    Write = 0x02,

    /// <summary>Mapped by a PMD-level (2 MiB) entry.</summary>
    Pmd = 0x04,

    /// <summary>Mapped by a PUD-level (1 GiB) entry.</summary>
    Pud = 0x08,

    /// <summary>The shared zero page.</summary>
    Zero = 0x10,

    /// <summary>A device-private page of this mirror's device.</summary>
    DevicePrivateLocal = 0x20,

    /// <summary>A device-private page of another device.</summary>
    DevicePrivateRemote = 0x30,

    /// <summary>A device-coherent page of this mirror's device.</summary>
    DeviceCoherentLocal = 0x40,

    /// <summary>A device-coherent page of another device.</summary>
    DeviceCoherentRemote = 0x50,

    /// <summary>The page cannot be mirrored (<c>HMM_PFN_ERROR</c>).</summary>
    Error = 0xFF,
}
