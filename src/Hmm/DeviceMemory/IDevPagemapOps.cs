
namespace Hmm;

/// <summary>
/// The driver's callbacks for a device pagemap (<c>struct dev_pagemap_ops</c>). Both are called without any
/// library lock held.
/// </summary>
public interface IDevPagemapOps
{
    /// <summary>
    /// The last reference to a device page was put (<c>folio_free</c>): return the page to the driver's free
    /// list. Called on the thread that put the page, before the pagemap's lifetime reference for the page is
    /// dropped, so the pagemap is still alive during the call. Must not throw; if it does, the reference is
    /// still dropped and the exception propagates to the putter.
    /// </summary>
    /// <param name="pagemap">The owning pagemap.</param>
    /// <param name="pfn">The page, now with refcount 0.</param>
    void PageFree(DevPagemap pagemap, Pfn pfn);

    /// <summary>
    /// A CPU access faulted on a device-private page (<c>migrate_to_ram</c>): migrate it back to System RAM.
    /// Only called for <see cref="MemoryType.DevicePrivate"/> pagemaps.
    /// </summary>
    /// <param name="fault">The faulting access.</param>
    /// <returns><see cref="VmFaultResult.None"/> once the page is back, or the error the access must see.</returns>
    VmFaultResult MigrateToRam(in DevicePrivateFault fault);
}
