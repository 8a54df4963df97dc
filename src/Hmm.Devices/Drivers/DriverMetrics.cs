using System.Diagnostics.Metrics;

namespace Hmm.Drivers;

/// <summary>
/// The reference drivers' instruments, on their own <see cref="Meter"/> named <see cref="HmmMetrics.MeterName"/>
/// (<c>Hmm</c>) like the core's and the simulated GPU's, so one <c>AddMeter("Hmm")</c> sees every layer. This
/// assembly uses no core internals, hence a meter of its own. Counted here: what only the driver knows (fault
/// batches and the victim blocks of eviction); the pages an eviction moves are the core's
/// <c>hmm.migration.pages</c> with reason <c>eviction</c>, and the faults the device raised are the device's.
/// </summary>
internal static class DriverMetrics
{
    private static readonly Meter s_meter = new(HmmMetrics.MeterName, typeof(DriverMetrics).Assembly.GetName().Version?.ToString());

    internal static readonly Counter<long> FaultBatches =
        s_meter.CreateCounter<long>("hmm.device.fault.batches", "{batch}", "Device fault batches fetched and serviced by a fault-servicing driver.");

    internal static readonly Histogram<long> FaultBatchSize =
        s_meter.CreateHistogram<long>("hmm.device.fault.batch.size", "{fault}", "Distinct faults in one serviced batch, after duplicates were merged.",
            tags: null, advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192] });

    internal static readonly Counter<long> FaultDuplicates =
        s_meter.CreateCounter<long>("hmm.device.fault.duplicates", "{fault}", "Fault records merged into another record of the same batch (same address space, page and access).");

    internal static readonly Counter<long> FaultsUnserviceable =
        s_meter.CreateCounter<long>("hmm.device.fault.unserviceable", "{fault}", "Device faults a driver could not service (no area, no permission, process gone).");

    internal static readonly Counter<long> Evictions =
        s_meter.CreateCounter<long>("hmm.device.evictions", "{block}", "Blocks of device memory chosen as eviction victims and migrated back to System RAM.");
}
