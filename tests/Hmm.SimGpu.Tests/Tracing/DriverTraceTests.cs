using FluentAssertions;
using Hmm.Devices;
using Hmm.Drivers;
using Hmm.SimGpu.Tests.Drivers.FaultServicing;
using Xunit;

namespace Hmm.SimGpu.Tests.Tracing;

/// <summary>The fault-servicing driver's trace events, with the device and core events of the same work.</summary>
public sealed class DriverTraceTests
{
    private const ulong Page = FaultServicingKit.Page;
    private const ulong Block = FaultServicingKit.Block;

    [Fact]
    public void ABatchRecordsItsNumberFaultsDuplicatesAndVirtualSpanAfterItsDeviceFaults()
    {
        using var kit = new FaultServicingKit(devices: 2);
        ulong area = kit.MapFilled(Block, new byte[Block], seed: 1);
        FaultBatchResult first = default;
        FaultBatchResult second = default;
        long start = 0;

        List<TraceEvent> events = TraceCapture.Record(kit.Memory, () =>
        {
            for (int engine = 0; engine < 3; engine++)
            {
                kit.Gpus[1].Access(kit.Spaces[1].Space, area, Page, DeviceAccessKind.Read, default, engine, replayable: true);
            }

            kit.Gpus[1].Access(kit.Spaces[1].Space, area + Page, Page, DeviceAccessKind.Write, default, 0, replayable: true);
            start = kit.Clock.Now;
            first = kit.Drivers[1].ServiceNextBatch();
            kit.Touch(1, area + (2 * Page), 1);
            second = kit.Drivers[1].ServiceNextBatch();
        });

        ushort device = kit.Gpus[1].Device.TraceId;
        device.Should().Be(1);
        List<TraceEvent> batches = events.OfKind(TraceEventKind.FaultBatch);
        batches.Should().HaveCount(2).And.OnlyContain(e => e.Device == device && e.Engine == TraceEngine.FaultUnit);
        batches[0].VirtualNs.Should().Be(start);
        batches[0].AsFaultBatch().Should().Be((0u, 4UL, 2UL, start + first.VirtualTime));
        batches[1].AsFaultBatch().Batch.Should().Be(1);
        batches[1].AsFaultBatch().Faults.Should().Be(1);
        batches[1].VirtualNs.Should().BeGreaterThanOrEqualTo(batches[0].AsFaultBatch().EndNs);
        batches[1].AsFaultBatch().EndNs.Should().Be(batches[1].VirtualNs + second.VirtualTime);
        events.FindIndex(e => e.Kind == TraceEventKind.FaultBatch).Should().BeGreaterThan(
            events.FindLastIndex(e => e.Kind == TraceEventKind.DeviceFault && e.VirtualNs <= start), "a batch is recorded once serviced");
        events.OfKind(TraceEventKind.DeviceFault).Should().HaveCount(5).And.OnlyContain(e => e.Device == device);

        TraceEvent setup = events.OfKind(TraceEventKind.MigrateSetup).First();
        setup.Device.Should().Be(device, "the migration's owner is the device's pagemap owner");
        setup.AsMigrateSetup().Direction.Should().Be(TraceDirection.HostToDevice);
        events.OfKind(TraceEventKind.MigrateFinalize).Sum(e => (long)e.AsMigrateFinalize().Moved).Should().Be(first.PagesMigrated + second.PagesMigrated);
        events.OfKind(TraceEventKind.Copy).Should().OnlyContain(e => e.Device == device && e.AsCopy().Direction == TraceDirection.HostToDevice);
        events.OfKind(TraceEventKind.DeviceAlloc).Should().OnlyContain(e => e.Device == device);
    }

    [Fact]
    public void AnEvictionRecordsOneEvictPerBlockWithItsDeviceToHostMigration()
    {
        using var kit = new FaultServicingKit(deviceBytes: 4L << 20);   // two blocks of device memory
        ulong area = kit.MapFilled(3 * Block, new byte[3 * Block], seed: 2);
        kit.Touch(0, area, 512);
        kit.ServiceAll();
        kit.Touch(0, area + Block, 512);
        kit.ServiceAll();
        Pfn firstOnDevice = kit.Mm.ReadPte(area).Pfn;

        List<TraceEvent> events = TraceCapture.Record(kit.Memory, () =>
        {
            kit.Touch(0, area + (2 * Block), 512);
            kit.ServiceAll();
        });

        TraceEvent evict = events.OfKind(TraceEventKind.Evict).Should().ContainSingle().Subject;
        evict.Device.Should().Be(kit.Gpu.Device.TraceId);
        evict.AsEvict().Should().Be((firstOnDevice.Value, 512UL));
        TraceEvent back = events.OfKind(TraceEventKind.MigrateFinalize).Single(e => e.AsMigrateFinalize().Direction == TraceDirection.DeviceToHost);
        back.AsMigrateFinalize().Should().Be((TraceDirection.DeviceToHost, firstOnDevice.PhysicalAddress, 512UL, 0UL));
        events.OfKind(TraceEventKind.Copy).Where(e => e.AsCopy().Direction == TraceDirection.DeviceToHost)
            .Sum(e => (long)e.AsCopy().Bytes).Should().Be(512 * (long)Page);
        events.OfKind(TraceEventKind.DeviceFree).Should().HaveCount(512);
        events.OfKind(TraceEventKind.DeviceFree).Min(e => e.AsDeviceFree().PagesInUse).Should().Be(512, "one block stays resident");
        kit.Driver.Statistics.BlocksEvicted.Should().Be(1);
    }

    [Fact]
    public void PagesMappedInPlaceRecordTheRangeFaultThatFoundThem()
    {
        using var kit = new FaultServicingKit();
        var file = new SimFile(kit.Memory, "data", Block);
        ulong area = kit.Mm.Mmap(0, Block, Protection.ReadWrite, MapFlags.Shared, file);

        List<TraceEvent> events = TraceCapture.Record(kit.Memory, () =>
        {
            kit.Touch(0, area + (4 * Page), 16);
            kit.Driver.ServiceNextBatch().PagesMappedInPlace.Should().Be(16);
        });

        TraceEvent range = events.OfKind(TraceEventKind.RangeFault).Should().ContainSingle().Subject;
        range.Device.Should().Be(kit.Gpu.Device.TraceId);
        range.AsRangeFault().Should().Be((area + (4 * Page), 16UL, 0UL, Errno.None));
        events.OfKind(TraceEventKind.CpuFault).Should().HaveCount(16, "hmm_range_fault faults each page in through handle_mm_fault");
    }

    [Fact]
    public void ARangeFaultThatInvalidatesItsOwnRangeCountsTheEbusyRestart()
    {
        using var kit = new FaultServicingKit();
        var file = new SimFile(kit.Memory, "data", Block);
        ulong area = kit.Mm.Mmap(0, Block, Protection.ReadWrite, MapFlags.Private, file);
        kit.Mm.Read(area, new byte[1]);   // the file page is mapped read-only: a write must copy it

        List<TraceEvent> events = TraceCapture.Record(kit.Memory, () =>
        {
            kit.Touch(0, area, 1, DeviceAccessKind.Write);
            kit.Driver.ServiceNextBatch().PagesMappedInPlace.Should().Be(1);
        });

        // The write fault replaces the file page with a private copy under an invalidation of the driver's own
        // range, so the first hmm_range_fault returns EBUSY and the driver starts again.
        events.OfKind(TraceEventKind.Invalidate).Should().Contain(e => e.AsInvalidate().Start == area && e.AsInvalidate().NotifiersVisited == 1);
        events.OfKind(TraceEventKind.RangeFault).Should().ContainSingle()
            .Which.AsRangeFault().Should().Be((area, 1UL, 1UL, Errno.None));
    }
}
