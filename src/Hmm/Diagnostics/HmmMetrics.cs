using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// The core's <see cref="Meter"/>, named <c>Hmm</c>, and its instruments. Listen with
/// <c>dotnet-counters monitor --counters Hmm</c> or an OpenTelemetry <c>AddMeter("Hmm")</c>.
/// </summary>
/// <remarks>
/// <para>Instruments are process-wide like the kernel's vmstat counters. Names and units follow the OpenTelemetry
/// semantic-convention naming rules (lowercase dot-separated namespaces under <c>hmm</c>, UCUM units, no unit in
/// the name, dimensions as attributes); attribute values come from small fixed sets of static strings.</para>
/// <para>The device layers (<c>Hmm.Devices</c>, <c>Hmm.SimGpu</c>) own further instruments on meters of the same
/// name <c>Hmm</c>, so one <c>AddMeter("Hmm")</c> or <c>MeterListener</c> filter on <see cref="MeterName"/> sees them
/// all. Each event is counted in exactly one layer; docs/metrics.md lists every instrument.</para>
/// <para>Hot paths call <c>Add</c> with cached attribute pairs: nothing is allocated, and with no listener an
/// instrument costs one enabled check.</para>
/// </remarks>
public static class HmmMetrics
{
    /// <summary>The meter name shared by every layer's meter.</summary>
    public const string MeterName = "Hmm";

    private static readonly Meter s_meter = new(MeterName, typeof(HmmMetrics).Assembly.GetName().Version?.ToString());

    internal static readonly Counter<long> PageAllocations =
        s_meter.CreateCounter<long>("hmm.page.allocations", "{page}", "System RAM pages allocated.");

    internal static readonly Counter<long> PageFrees =
        s_meter.CreateCounter<long>("hmm.page.frees", "{page}", "Pages whose last reference was put (RAM and device).");

    internal static readonly Counter<long> PagemapRegistrations =
        s_meter.CreateCounter<long>("hmm.pagemap.registrations", "{pagemap}", "Device pagemaps registered (memremap_pages).");

    internal static readonly Counter<long> PagemapTeardowns =
        s_meter.CreateCounter<long>("hmm.pagemap.teardowns", "{pagemap}", "Device pagemaps torn down (memunmap_pages).");

    internal static readonly Counter<long> PagemapPageInits =
        s_meter.CreateCounter<long>("hmm.pagemap.page.inits", "{page}", "Device pages handed to a driver (zone_device_page_init).");

    internal static readonly Counter<long> MmFaults =
        s_meter.CreateCounter<long>("hmm.mm.faults", "{fault}", "Page faults handled by the address space (handle_mm_fault), by the CPU or on behalf of a device.");

    internal static readonly Counter<long> Invalidations =
        s_meter.CreateCounter<long>("hmm.notifier.invalidations", "{invalidation}", "Address ranges invalidated through MMU notifiers (invalidate_range_start).");

    internal static readonly Counter<long> NotifierReadRetries =
        s_meter.CreateCounter<long>("hmm.notifier.read_retries", "{retry}", "mmu_interval_read_retry calls that found the interval invalidated since read_begin: what the caller read is stale.");

    internal static readonly Counter<long> RangeFaultCalls =
        s_meter.CreateCounter<long>("hmm.range_fault.calls", "{call}", "hmm_range_fault calls, by result; a result of ebusy is a retry the caller must make.");

    internal static readonly Counter<long> MigrationPages =
        s_meter.CreateCounter<long>("hmm.migration.pages", "{page}", "Pages migrated between System RAM and device memory (migrate_vma_finalize, migrate_device_finalize).");

    internal static readonly Counter<long> MigrationIo =
        s_meter.CreateCounter<long>("hmm.migration.io", "By", "Bytes of the pages migrated between System RAM and device memory.");

    // Attribute pairs, built once: the values are static strings, so recording boxes nothing.
    private static readonly KeyValuePair<string, object?>[] s_faultAccess =
        [Tag("hmm.fault.access", "read"), Tag("hmm.fault.access", "write"), Tag("hmm.fault.access", "unshare")];

    private static readonly KeyValuePair<string, object?> s_faultOriginCpu = Tag("hmm.fault.origin", "cpu");
    private static readonly KeyValuePair<string, object?> s_faultOriginRemote = Tag("hmm.fault.origin", "remote");

    // Indexed by PteKind + 1.
    private static readonly KeyValuePair<string, object?>[] s_faultEntry =
    [
        Tag("hmm.fault.entry", "none"), Tag("hmm.fault.entry", "present"), Tag("hmm.fault.entry", "device_private"),
        Tag("hmm.fault.entry", "migration"), Tag("hmm.fault.entry", "device_exclusive"),
    ];

    private static readonly KeyValuePair<string, object?>[] s_faultResult =
    [
        Tag("hmm.fault.result", "ok"), Tag("hmm.fault.result", "oom"), Tag("hmm.fault.result", "sigbus"),
        Tag("hmm.fault.result", "sigsegv"), Tag("hmm.fault.result", "retry"),
    ];

    // Indexed by MmuNotifierEvent.
    private static readonly KeyValuePair<string, object?>[] s_invalidationEvent =
    [
        Tag("hmm.notifier.event", "unmap"), Tag("hmm.notifier.event", "clear"), Tag("hmm.notifier.event", "protection_vma"),
        Tag("hmm.notifier.event", "protection_page"), Tag("hmm.notifier.event", "soft_dirty"), Tag("hmm.notifier.event", "release"),
        Tag("hmm.notifier.event", "migrate"), Tag("hmm.notifier.event", "exclusive"),
    ];

    private static readonly KeyValuePair<string, object?>[] s_rangeFaultResult =
    [
        Tag("hmm.range_fault.result", "ok"), Tag("hmm.range_fault.result", "ebusy"), Tag("hmm.range_fault.result", "efault"),
        Tag("hmm.range_fault.result", "eperm"), Tag("hmm.range_fault.result", "enomem"), Tag("hmm.range_fault.result", "other"),
    ];

    private static readonly KeyValuePair<string, object?> s_toDevice = Tag("hmm.migration.direction", "to_device");
    private static readonly KeyValuePair<string, object?> s_toSystem = Tag("hmm.migration.direction", "to_system");

    // Indexed by MigrationReason.
    private static readonly KeyValuePair<string, object?>[] s_migrationReason =
    [
        Tag("hmm.migration.reason", "explicit"), Tag("hmm.migration.reason", "cpu_fault"),
        Tag("hmm.migration.reason", "eviction"), Tag("hmm.migration.reason", "pin"),
    ];

    /// <summary>Counts one handle_mm_fault: its access, origin, the entry it found first, and its result.</summary>
    internal static void RecordFault(FaultFlags flags, PteKind entry, VmFaultResult result)
    {
        if (!MmFaults.Enabled)
        {
            return;
        }

        int access = (flags & FaultFlags.Write) != 0 ? 1 : (flags & FaultFlags.Unshare) != 0 ? 2 : 0;
        var tags = new TagList
        {
            s_faultAccess[access],
            (flags & FaultFlags.Remote) != 0 ? s_faultOriginRemote : s_faultOriginCpu,
            s_faultEntry[(int)entry + 1],
            s_faultResult[ResultIndex(result)],
        };
        MmFaults.Add(1, in tags);
    }

    /// <summary>Counts one invalidate_range_start by its event.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RecordInvalidation(MmuNotifierEvent reason)
    {
        if (Invalidations.Enabled)
        {
            Invalidations.Add(1, s_invalidationEvent[(uint)reason < (uint)s_invalidationEvent.Length ? (int)reason : 0]);
        }
    }

    /// <summary>Counts one hmm_range_fault call by its result.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RecordRangeFault(Errno result)
    {
        if (RangeFaultCalls.Enabled)
        {
            int index = result switch
            {
                Errno.None => 0,
                Errno.EBUSY => 1,
                Errno.EFAULT => 2,
                Errno.EPERM => 3,
                Errno.ENOMEM => 4,
                _ => 5,
            };
            RangeFaultCalls.Add(1, s_rangeFaultResult[index]);
        }
    }

    /// <summary>Counts the pages (and their bytes) one finalize moved, per direction.</summary>
    internal static void RecordMigration(long toDevice, long toSystem, MigrationReason reason)
    {
        KeyValuePair<string, object?> why = s_migrationReason[(int)reason];
        if (toDevice > 0)
        {
            MigrationPages.Add(toDevice, s_toDevice, why);
            MigrationIo.Add(toDevice * PageSize.Bytes, s_toDevice, why);
        }

        if (toSystem > 0)
        {
            MigrationPages.Add(toSystem, s_toSystem, why);
            MigrationIo.Add(toSystem * PageSize.Bytes, s_toSystem, why);
        }
    }

    private static int ResultIndex(VmFaultResult result) => result switch
    {
        VmFaultResult.None => 0,
        _ when (result & VmFaultResult.Oom) != 0 => 1,
        _ when (result & VmFaultResult.Sigbus) != 0 => 2,
        _ when (result & VmFaultResult.Sigsegv) != 0 => 3,
        _ => 4,
    };

    private static KeyValuePair<string, object?> Tag(string key, string value) => new(key, value);
}
