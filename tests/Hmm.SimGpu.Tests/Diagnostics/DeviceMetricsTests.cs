using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using FluentAssertions;
using Hmm.Devices;
using Hmm.Drivers;
using Hmm.SimGpu.Tests.Drivers.FaultServicing;
using Hmm.Tests.Diagnostics;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Diagnostics;

/// <summary>
/// The device layers' instruments (the simulated GPU's and the fault-servicing driver's meters, both named Hmm)
/// read back through a MeterListener, and the list of every instrument against the documented table. The
/// collection runs alone, so the counts are exact.
/// </summary>
[Collection(nameof(MetricsCollection))]
public sealed class DeviceMetricsTests
{
    private const int Page = FaultServicingKit.Page;
    private const ulong Block = FaultServicingKit.Block;

    /// <summary>The table of docs/metrics.md: instrument, unit, kind. Every instrument of the Hmm meters is here.</summary>
    internal static readonly (string Name, string Unit, Type Kind)[] Documented =
    [
        ("hmm.page.allocations", "{page}", typeof(Counter<long>)),
        ("hmm.page.frees", "{page}", typeof(Counter<long>)),
        ("hmm.pagemap.registrations", "{pagemap}", typeof(Counter<long>)),
        ("hmm.pagemap.teardowns", "{pagemap}", typeof(Counter<long>)),
        ("hmm.pagemap.page.inits", "{page}", typeof(Counter<long>)),
        ("hmm.mm.faults", "{fault}", typeof(Counter<long>)),
        ("hmm.notifier.invalidations", "{invalidation}", typeof(Counter<long>)),
        ("hmm.notifier.read_retries", "{retry}", typeof(Counter<long>)),
        ("hmm.range_fault.calls", "{call}", typeof(Counter<long>)),
        ("hmm.migration.pages", "{page}", typeof(Counter<long>)),
        ("hmm.migration.io", "By", typeof(Counter<long>)),
        ("hmm.device.faults", "{fault}", typeof(Counter<long>)),
        ("hmm.device.fault.dropped", "{fault}", typeof(Counter<long>)),
        ("hmm.device.fault.batches", "{batch}", typeof(Counter<long>)),
        ("hmm.device.fault.batch.size", "{fault}", typeof(Histogram<long>)),
        ("hmm.device.fault.duplicates", "{fault}", typeof(Counter<long>)),
        ("hmm.device.fault.unserviceable", "{fault}", typeof(Counter<long>)),
        ("hmm.device.evictions", "{block}", typeof(Counter<long>)),
    ];

    [Fact]
    public void EveryInstrumentOfTheHmmMetersIsDocumentedWithItsUnitAndKind()
    {
        using var metrics = new MetricsRecorder();

        // Each layer's instruments come to life with its metrics class; make sure all three have.
        RuntimeHelpers.RunClassConstructor(typeof(HmmMetrics).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(DriverMetrics).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(SimGpuMetrics).TypeHandle);

        IReadOnlyDictionary<string, Instrument> published = metrics.Instruments;
        published.Keys.Should().BeEquivalentTo(Documented.Select(d => d.Name));
        foreach ((string name, string unit, Type kind) in Documented)
        {
            published[name].Unit.Should().Be(unit, name);
            published[name].Should().BeOfType(kind, name);
            published[name].Description.Should().NotBeNullOrWhiteSpace(name);
            name.Should().MatchRegex("^hmm(\\.[a-z][a-z_]*)+$", "names are lowercase dot-separated namespaces under hmm");
        }
    }

    [Fact]
    public void AServicedBatchWithDuplicatesCountsEachRaisedFaultOneBatchItsSizeAndTheMergedRecords()
    {
        using var kit = new FaultServicingKit();
        ulong area = kit.MapFilled(Block, new byte[Block], seed: 1);
        using var metrics = new MetricsRecorder();
        for (int engine = 0; engine < 3; engine++)
        {
            kit.Gpu.Access(kit.Space.Space, area, Page, DeviceAccessKind.Read, default, engine, replayable: true);
        }

        kit.Gpu.Access(kit.Space.Space, area + Page, Page, DeviceAccessKind.Write, default, 0, replayable: true);

        FaultBatchResult result = kit.Driver.ServiceNextBatch();

        result.Count.Should().Be(2);
        metrics.Sum("hmm.device.faults").Should().Be(4, "every record the device raised, duplicates included");
        metrics.Sum("hmm.device.faults", ("hmm.fault.access", "read")).Should().Be(3);
        metrics.Sum("hmm.device.faults", ("hmm.fault.access", "write")).Should().Be(1);
        metrics.Sum("hmm.device.fault.dropped").Should().Be(0);
        metrics.Sum("hmm.device.fault.batches").Should().Be(1);
        metrics.Of("hmm.device.fault.batch.size").Should().ContainSingle().Which.Value.Should().Be(2, "two distinct faults after merging");
        metrics.Sum("hmm.device.fault.duplicates").Should().Be(2);
        metrics.Sum("hmm.device.fault.unserviceable").Should().Be(0);
        metrics.Sum("hmm.migration.pages", ("hmm.migration.direction", "to_device"), ("hmm.migration.reason", "explicit")).Should().Be(2);
        metrics.Sum("hmm.migration.pages").Should().Be(kit.Driver.Statistics.PagesToDevice);
    }

    [Fact]
    public void AFullFaultBufferCountsTheDroppedFaults()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine, options: new SimGpuOptions { MemoryBytes = 8 * MiB, FaultBufferEntries = 2, FaultBatchSize = 2 });
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        using var metrics = new MetricsRecorder();

        for (ulong i = 0; i < 4; i++)
        {
            gpu.Access(space, DeviceVa + (i * Page), 1, DeviceAccessKind.Write, default, engine: 0, replayable: true).Completed.Should().BeFalse();
        }

        metrics.Sum("hmm.device.faults", ("hmm.fault.access", "write")).Should().Be(4);
        metrics.UnitOf("hmm.device.fault.dropped").Should().Be("{fault}");
        metrics.Sum("hmm.device.fault.dropped").Should().Be(2);
        gpu.Statistics.FaultBufferOverflows.Should().Be(2);
    }

    [Fact]
    public void AnAccessRunRecordsItsFaultsAndDropsWhenItEnds()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine, options: new SimGpuOptions { MemoryBytes = 8 * MiB, FaultBufferEntries = 2, FaultBatchSize = 2 });
        SimAccessRun run = gpu.CreateAccessRun((SimAddressSpace)gpu.CreateAddressSpace("vm"));
        using var metrics = new MetricsRecorder();

        run.Begin();
        for (ulong i = 0; i < 3; i++)
        {
            run.Access(DeviceVa + (i * Page), 1, DeviceAccessKind.Write, default, engine: 0).Completed.Should().BeFalse();
        }

        run.Access(DeviceVa, 1, DeviceAccessKind.Read, default, engine: 0).Completed.Should().BeFalse();
        metrics.Sum("hmm.device.faults").Should().Be(0, "a listener is not called under the run's locks");
        run.End();

        metrics.Sum("hmm.device.faults", ("hmm.fault.access", "write")).Should().Be(3);
        metrics.Sum("hmm.device.faults", ("hmm.fault.access", "read")).Should().Be(1);
        metrics.Sum("hmm.device.fault.dropped").Should().Be(2);
        gpu.Statistics.FaultBufferOverflows.Should().Be(2);
        gpu.Statistics.FaultsRaised.Should().Be(4);
    }

    [Fact]
    public void AnEvictionCountsItsVictimBlockAndItsPagesAsEvictionMigrations()
    {
        using var kit = new FaultServicingKit(deviceBytes: 4L << 20);   // two blocks of device memory, three of data
        ulong area = kit.MapFilled(3 * Block, new byte[3 * Block], seed: 2);
        using var metrics = new MetricsRecorder();

        for (int block = 0; block < 3; block++)
        {
            kit.Touch(0, area + ((ulong)block * Block), 512);
            kit.ServiceAll();
        }

        metrics.UnitOf("hmm.device.evictions").Should().Be("{block}");
        metrics.Sum("hmm.device.evictions").Should().Be(1);
        metrics.Sum("hmm.migration.pages", ("hmm.migration.direction", "to_system"), ("hmm.migration.reason", "eviction")).Should().Be(512);
        metrics.Sum("hmm.migration.io", ("hmm.migration.direction", "to_system"), ("hmm.migration.reason", "eviction")).Should().Be(512L * Page);
        metrics.Sum("hmm.migration.pages", ("hmm.migration.direction", "to_device")).Should().Be(3 * 512);
        metrics.Sum("hmm.device.fault.batches").Should().Be(kit.Driver.Statistics.Batches);
        metrics.Of("hmm.device.fault.batch.size").Sum(m => m.Value).Should().Be(kit.Driver.Statistics.Faults);
    }
}
