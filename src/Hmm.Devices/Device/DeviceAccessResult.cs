namespace Hmm.Devices;

/// <summary>How far a device access got (<see cref="IDeviceBackend.Access"/>).</summary>
/// <param name="BytesDone">Bytes accessed before the access stopped; the whole length when it completed.</param>
/// <param name="FaultAddress">The page-aligned device virtual address that stopped it, when <see cref="Completed"/> is false.</param>
/// <param name="Completed">Whether every page was accessed.</param>
public readonly record struct DeviceAccessResult(ulong BytesDone, ulong FaultAddress, bool Completed);
