using System.Diagnostics.Metrics;

namespace Hmm;

/// <summary>
/// The library's one <see cref="Meter"/>, named <c>Hmm</c>, and its instruments. Listen with
/// <c>dotnet-counters monitor --counters Hmm</c> or an OpenTelemetry <c>AddMeter("Hmm")</c>.
/// </summary>
/// <remarks>Instruments are process-wide like the kernel's vmstat counters; tags are low-cardinality only.</remarks>
public static class HmmMetrics
{
    /// <summary>The meter name.</summary>
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

    internal static readonly Counter<long> Faults =
        s_meter.CreateCounter<long>("hmm.faults", "{fault}", "Page faults handled (handle_mm_fault), CPU and remote.");

    internal static readonly Counter<long> Invalidations =
        s_meter.CreateCounter<long>("hmm.invalidations", "{range}", "Address ranges invalidated through MMU notifiers.");

    internal static readonly Counter<long> RangeFaults =
        s_meter.CreateCounter<long>("hmm.range_fault.calls", "{call}", "hmm_range_fault calls.");

    internal static readonly Counter<long> DevicePageInits =
        s_meter.CreateCounter<long>("hmm.device.page_inits", "{page}", "Device pages handed to a driver (zone_device_page_init).");

    internal static readonly Counter<long> MigratedPages =
        s_meter.CreateCounter<long>("hmm.migration.pages", "{page}", "Pages moved by device migration (migrate_vma_finalize, migrate_device_finalize).");

    internal static readonly Counter<long> MigratedBytes =
        s_meter.CreateCounter<long>("hmm.migration.bytes", "By", "Bytes of the pages moved by device migration.");
}
