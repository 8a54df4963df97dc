namespace Hmm.Devices;

/// <summary>One device fault record.</summary>
/// <param name="Space">The address space the access went through.</param>
/// <param name="Address">The page-aligned device virtual address.</param>
/// <param name="Access">What the access needed.</param>
/// <param name="Engine">The engine that faulted.</param>
/// <param name="Timestamp">Virtual nanoseconds at which the fault was raised.</param>
public readonly record struct DeviceFault(IDeviceAddressSpace Space, ulong Address, DeviceAccessKind Access, int Engine, long Timestamp);
