namespace Hmm.Devices;

/// <summary>
/// The driver side of a device's memory: what the device calls when the CPU touches one of its private pages,
/// and when one of its pages is freed. Both run without library locks held.
/// </summary>
public interface IDeviceMemoryClient
{
    /// <summary>
    /// A CPU access faulted on one of this device's private pages (<c>dev_pagemap_ops.migrate_to_ram</c>): move it
    /// back to System RAM. The page is locked and referenced by the fault path.
    /// </summary>
    /// <param name="fault">The faulting access.</param>
    /// <returns><see cref="VmFaultResult.None"/> once the page is back, or the error the access must see.</returns>
    VmFaultResult MigrateToRam(in DevicePrivateFault fault);

    /// <summary>The last reference to one of this device's pages was put; the device already took it back.</summary>
    /// <param name="page">The freed page.</param>
    void PageFreed(Pfn page);
}
