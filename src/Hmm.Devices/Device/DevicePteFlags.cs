namespace Hmm.Devices;

/// <summary>Permissions of a device page table entry (the kernel test driver's xarray tags).</summary>
[Flags]
public enum DevicePteFlags : byte
{
    /// <summary>No access: not a valid entry.</summary>
    None = 0,

    /// <summary>The device may read the page.</summary>
    Read = 1,

    /// <summary>The device may write the page (implies <see cref="Read"/>).</summary>
    Write = 2,

    /// <summary>The device holds exclusive (atomic) access to the page, see <c>make_device_exclusive</c>.</summary>
    Atomic = 4,
}
