
namespace Hmm;

/// <summary>
/// Registration, lookup and teardown of device memory (<c>mm/memremap.c</c>): <c>memremap_pages</c>,
/// <c>memunmap_pages</c>. Lookups are on <see cref="DevPagemap"/> (<see cref="DevPagemap.Get"/>, <see cref="DevPagemap.OfPage"/>).
/// </summary>
/// <remarks>
/// Rules: a registration either succeeds completely or leaves nothing behind (no section, no lookup entry, no
/// reference), so the same range can be registered again. A failure in range i unwinds exactly ranges 0..i-1.
/// Teardown order is kill, drop the mapping's own references, wait for the last put, then remove pages and
/// lookup entries. Registration and removal hold the memory's hotplug lock; lookups are lock-free.
/// </remarks>
public static class Memremap
{
    /// <summary>
    /// Registers device memory and creates its struct pages (<c>memremap_pages</c>). Every page starts free
    /// (refcount 0) and owned by the new pagemap.
    /// </summary>
    /// <param name="memory">The physical memory to extend.</param>
    /// <param name="options">Type, ranges, owner and callbacks.</param>
    /// <returns>The live pagemap.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="HmmException">
    /// <see cref="Errno.EINVAL"/>: no ranges, an unknown type, a range that is empty, not 2 MiB aligned or beyond
    /// 2^46, device-private memory without ops or owner, or device-coherent memory without ops or owner;
    /// <see cref="Errno.ENXIO"/>: a range overlaps System RAM; <see cref="Errno.ENOMEM"/>: a range overlaps
    /// another pagemap (the kernel's "conflicting mapping") or an injected step failure. Nothing changes.
    /// </exception>
    public static DevPagemap Map(PhysicalMemory memory, DevPagemapOptions options)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(options);
        PhysicalRange[] ranges = Validate(options);
        var pagemap = new DevPagemap(memory, options, ranges);

        lock (memory.HotplugLock)
        {
            pagemap.Id = memory.RegisterZoneDeviceOwnerUnsynchronized(pagemap);
            pagemap.TraceDevice = memory.TraceDeviceOfRegionUnsynchronized(ranges[0]);
            for (int i = 0; i < ranges.Length; i++)
            {
                try
                {
                    AddRangeUnsynchronized(pagemap, ranges[i]);
                }
                catch (HmmException error)
                {
                    Unwind(pagemap, rangesDone: i);
                    Log.PagemapRegistrationFailed(memory.Logger, i, error.Error, i);
                    throw;
                }
            }

            if (DevPagemap.HoldsPerPageReferences(pagemap.Type))
            {
                pagemap.Ref.TryGetLive((long)pagemap.PageCount);
            }

            pagemap.Publish();
        }

        HmmMetrics.PagemapRegistrations.Add(1);
        Log.PagemapRegistered(memory.Logger, pagemap.Id, pagemap.Type, ranges.Length, pagemap.PageCount);
        return pagemap;
    }

    /// <summary>
    /// Tears a pagemap down (<c>memunmap_pages</c>): kill, drop the mapping's own references, wait until every
    /// device page is free, then remove the struct pages and lookup entries. Once per pagemap, and only for a
    /// pagemap the caller registered with <see cref="Map"/>: a device-managed one (<see cref="Devm.Map"/>) is torn
    /// down by <see cref="Devm.UnmapAsync"/> or its device's unbind.
    /// </summary>
    /// <param name="pagemap">The pagemap.</param>
    /// <param name="cancellationToken">
    /// Stops waiting; the teardown itself continues and completes after the last put. A cancelled caller does not
    /// call this again (that would be a second unmap); <see cref="DevPagemap.State"/> says when it is Removed.
    /// </param>
    /// <returns>A task that completes when the pagemap is removed.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="pagemap"/> is null.</exception>
    /// <exception cref="KernelBugException">
    /// Thrown at once, before anything changes: the pagemap's teardown already began (a second
    /// <c>memunmap_pages</c> kills its percpu_ref twice), or the pagemap is device-managed (its unbind would tear it
    /// down a second time).
    /// </exception>
    public static Task UnmapAsync(DevPagemap pagemap, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pagemap);
        return StartExplicitTeardown(pagemap).WaitAsync(cancellationToken);
    }

    /// <summary>The blocking form of <see cref="UnmapAsync"/>, as the kernel's: waits as long as pages stay referenced.</summary>
    /// <param name="pagemap">The pagemap.</param>
    /// <exception cref="ArgumentNullException"><paramref name="pagemap"/> is null.</exception>
    /// <exception cref="KernelBugException">As <see cref="UnmapAsync"/>; nothing changes.</exception>
    public static void Unmap(DevPagemap pagemap)
    {
        ArgumentNullException.ThrowIfNull(pagemap);
        StartExplicitTeardown(pagemap).GetAwaiter().GetResult();
    }

    private static Task StartExplicitTeardown(DevPagemap pagemap)
    {
        if (pagemap.Device is { } device)
        {
            ThrowHelper.ThrowBug($"memunmap_pages of pagemap {pagemap.Id} '{pagemap.Name}', which device '{device.Name}' manages: its unbind would tear it down again; use Devm.UnmapAsync.");
        }

        return pagemap.StartTeardown(explicitUnmap: true);
    }

    /// <summary>Offlines the first <paramref name="count"/> ranges and drops their empty sections. Caller holds the hotplug lock.</summary>
    internal static void RemoveRangesUnsynchronized(DevPagemap pagemap, int count)
    {
        for (int i = 0; i < count; i++)
        {
            pagemap.Memory.OfflineSubsectionsUnsynchronized(pagemap.Ranges[i]);
            pagemap.Memory.RemoveEmptySectionsUnsynchronized(pagemap.Ranges[i]);
        }
    }

    private static PhysicalRange[] Validate(DevPagemapOptions options)
    {
        if (options.Ranges is null || options.Ranges.Count == 0)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, "A pagemap needs at least one range (nr_range == 0).");
        }

        switch (options.Type)
        {
            case MemoryType.DevicePrivate when options.Ops is null || options.Owner is null:
                ThrowHelper.ThrowHmm(Errno.EINVAL, "Device-private memory needs ops (page-free and migrate-to-RAM) and an owner.");
                break;
            case MemoryType.DeviceCoherent when options.Ops is null || options.Owner is null:
                ThrowHelper.ThrowHmm(Errno.EINVAL, "Device-coherent memory needs ops (page-free) and an owner.");
                break;
            case MemoryType.DevicePrivate or MemoryType.DeviceCoherent or MemoryType.Generic or MemoryType.PciP2PDma:
                break;
            default:
                ThrowHelper.ThrowHmm(Errno.EINVAL, $"Unknown memory type {(int)options.Type}.");
                break;
        }

        var ranges = new PhysicalRange[options.Ranges.Count];
        for (int i = 0; i < ranges.Length; i++)
        {
            PhysicalRange range = options.Ranges[i];
            const ulong subsection = 2UL << 20;
            if (range.Length == 0 || range.Start % subsection != 0 || range.Length % subsection != 0
                || range.End < range.Start || range.End > 1UL << Pfn.MaxPhysicalAddressBits)
            {
                ThrowHelper.ThrowHmm(Errno.EINVAL, $"Range {i} {range} must be non-empty, 2 MiB aligned in start and length, and below 2^{Pfn.MaxPhysicalAddressBits}.");
            }

            ranges[i] = range;
        }

        return ranges;
    }

    /// <summary>Checks the range, then populates it; a failed step undoes this range's own changes before it throws.</summary>
    private static void AddRangeUnsynchronized(DevPagemap pagemap, PhysicalRange range)
    {
        PhysicalMemory memory = pagemap.Memory;
        int conflict = memory.FindPagemapIdUnsynchronized(range);
        if (conflict != 0)
        {
            ThrowHelper.ThrowHmm(Errno.ENOMEM, $"Range {range} conflicts with pagemap {conflict}.");
        }

        if (memory.OverlapsRam(range))
        {
            ThrowHelper.ThrowHmm(Errno.ENXIO, $"Range {range} overlaps System RAM.");
        }

        // From here the range's subsections were all offline, so undoing means taking them offline again.
        try
        {
            memory.AddSectionsUnsynchronized(range);
            FailIfInjected(memory, FaultPoint.MemremapAddSections, range);
            memory.InitDevicePagesUnsynchronized(range, pagemap.Id);
            FailIfInjected(memory, FaultPoint.MemremapInitPages, range);
            memory.PublishDeviceSubsectionsUnsynchronized(range, pagemap.Id);
            FailIfInjected(memory, FaultPoint.MemremapPublishLookup, range);
        }
        catch (HmmException)
        {
            memory.OfflineSubsectionsUnsynchronized(range);
            memory.RemoveEmptySectionsUnsynchronized(range);
            throw;
        }
    }

    private static void FailIfInjected(PhysicalMemory memory, FaultPoint point, PhysicalRange range)
    {
        if (memory.FaultInjection.ShouldFail(point))
        {
            ThrowHelper.ThrowHmm(Errno.ENOMEM, $"Injected failure at {point} for range {range}.");
        }
    }

    /// <summary>Undoes the ranges a failed registration completed, then frees the owner id.</summary>
    private static void Unwind(DevPagemap pagemap, int rangesDone)
    {
        // A racing lookup may hold a transient reference on the not-yet-registered pagemap; it puts it at once.
        pagemap.Ref.Kill();
        pagemap.Ref.Idle.GetAwaiter().GetResult();
        RemoveRangesUnsynchronized(pagemap, rangesDone);
        pagemap.Memory.UnregisterZoneDeviceOwnerUnsynchronized(pagemap.Id);
    }
}
