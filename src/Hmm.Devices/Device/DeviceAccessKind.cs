namespace Hmm.Devices;

/// <summary>What a device access needs from the device page table entry it goes through.</summary>
public enum DeviceAccessKind : byte
{
    /// <summary>A read: any valid entry.</summary>
    Read = 0,

    /// <summary>A write: a writable entry.</summary>
    Write = 1,

    /// <summary>An atomic: a writable entry with exclusive (atomic) access, see <see cref="DevicePteFlags.Atomic"/>.</summary>
    Atomic = 2,
}
