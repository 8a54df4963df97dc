namespace Hmm;

// The migration's trace events: one per step and range (setup, pages, finalize), never one per page. Built only
// when tracing is on; the scans below read the migration's own arrays, and look up at most two pages' pagemaps.
// The direction follows the source: device memory (a ZONE_DEVICE page) to RAM is DeviceToHost, to device memory
// DeviceToDevice; System RAM or an empty page is HostToDevice. The device is the source page's, else the
// destination page's, else the device whose pagemaps the migration's owner owns.
public static partial class Migrate
{
    private static void TraceSetup(PhysicalMemory memory, MigrateVmaSelect select, ulong start, ReadOnlySpan<ulong> src, ulong selected, object? owner)
    {
        TraceEmitter trace = memory.Trace;
        (TraceDirection direction, ushort device) = Classify(memory, src, default, owner);
        trace.Emit(TraceEvent.MigrateSetup(device, direction, select, start, (ulong)src.Length, selected, trace.VirtualNow));
    }

    private static void TracePages(PhysicalMemory memory, ulong start, ReadOnlySpan<ulong> src, ReadOnlySpan<ulong> dst, object? owner)
    {
        TraceEmitter trace = memory.Trace;
        (TraceDirection direction, ushort device) = Classify(memory, src, dst, owner);
        ulong migrating = 0;
        foreach (ulong entry in src)
        {
            if (MigratePfn.IsMigrating(entry))
            {
                migrating++;
            }
        }

        trace.Emit(TraceEvent.MigratePages(device, direction, start, (ulong)src.Length, migrating, trace.VirtualNow));
    }

    // Counted before finalize restores the pages that stay: moved = still migrating with a destination page;
    // declined = collected (a page, or an empty page selected) but not moved.
    private static void TraceFinalize(PhysicalMemory memory, ulong start, ReadOnlySpan<ulong> src, ReadOnlySpan<ulong> dst, object? owner)
    {
        TraceEmitter trace = memory.Trace;
        (TraceDirection direction, ushort device) = Classify(memory, src, dst, owner);
        ulong moved = 0;
        ulong declined = 0;
        for (int i = 0; i < src.Length; i++)
        {
            if (MigratePfn.IsMigrating(src[i]) && (dst[i] & MigratePfn.Valid) != 0)
            {
                moved++;
            }
            else if (src[i] != 0)
            {
                declined++;
            }
        }

        trace.Emit(TraceEvent.MigrateFinalize(device, direction, start, moved, declined, trace.VirtualNow));
    }

    // A device-range migration that collected no page (an eviction pass over a chunk with nothing in use) records
    // nothing: it moved nothing, and its direction and device are unknown without a page.
    private static bool CollectedAny(ReadOnlySpan<ulong> src) => src.IndexOfAnyExcept(0UL) >= 0;

    // A device-range migration has no virtual range: its three events carry the physical address of the first page
    // it collected.
    private static ulong DeviceRangeStart(ReadOnlySpan<ulong> src)
    {
        foreach (ulong entry in src)
        {
            if (MigratePfn.TryGetPage(entry, out Pfn first))
            {
                return first.PhysicalAddress;
            }
        }

        return 0;
    }

    private static (TraceDirection Direction, ushort Device) Classify(PhysicalMemory memory, ReadOnlySpan<ulong> src, ReadOnlySpan<ulong> dst, object? owner)
    {
        ushort? source = null;
        ushort? destination = null;
        bool sourceSeen = false;
        bool destinationSeen = dst.IsEmpty;
        for (int i = 0; i < src.Length && !(sourceSeen && destinationSeen); i++)
        {
            if (!sourceSeen && MigratePfn.TryGetPage(src[i], out Pfn page))
            {
                source = memory.TraceDeviceOfPage(page);
                sourceSeen = true;
            }

            if (!destinationSeen && MigratePfn.TryGetPage(dst[i], out Pfn target))
            {
                destination = memory.TraceDeviceOfPage(target);
                destinationSeen = true;
            }
        }

        TraceDirection direction = source is null ? TraceDirection.HostToDevice
            : destination is null ? TraceDirection.DeviceToHost
            : TraceDirection.DeviceToDevice;
        return (direction, source ?? destination ?? memory.TraceDeviceOfOwner(owner));
    }
}
