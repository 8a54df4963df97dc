namespace Hmm;

/// <summary>
/// The access a device fault was taken for. The values match <c>Hmm.Devices.DeviceAccessKind</c>; part of the
/// file format.
/// </summary>
public enum TraceDeviceAccess : uint
{
    /// <summary>A read.</summary>
    Read = 0,

    /// <summary>A write.</summary>
    Write = 1,

    /// <summary>An atomic read-modify-write.</summary>
    Atomic = 2,
}
