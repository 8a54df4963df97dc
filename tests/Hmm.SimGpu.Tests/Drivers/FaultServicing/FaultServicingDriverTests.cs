using FluentAssertions;
using Hmm.Devices;
using Hmm.Drivers;
using Hmm.SimGpu;
using Xunit;

namespace Hmm.SimGpu.Tests.Drivers.FaultServicing;

public sealed class FaultServicingDriverTests
{
    private const int Page = FaultServicingKit.Page;
    private const ulong Block = FaultServicingKit.Block;

    [Fact]
    public void DuplicateFaultsInOneBatchAreMergedAndCounted()
    {
        using var kit = new FaultServicingKit();
        ulong area = kit.MapFilled(Block, new byte[Block], seed: 1);
        for (int engine = 0; engine < 3; engine++)
        {
            kit.Gpu.Access(kit.Space.Space, area, Page, DeviceAccessKind.Read, default, engine, replayable: true);
        }

        FaultBatchResult result = kit.Driver.ServiceNextBatch();

        result.Count.Should().Be(1);
        result.DuplicatesMerged.Should().Be(2);
        result.PagesMigrated.Should().Be(1);
        result.Blocks.Should().Be(1);
        kit.Driver.Statistics.Faults.Should().Be(1);
        kit.Driver.Statistics.DuplicatesMerged.Should().Be(2);
        kit.Driver.Statistics.Batches.Should().Be(1);
        kit.Space.Space.TryLookup(area, out DevicePte pte).Should().BeTrue();
        kit.Gpu.LocalMemory.Contains(pte.Page).Should().BeTrue();
    }

    [Fact]
    public void FirstTouchMigratesTheFaultedPagesWithTheirDataAndTheDeviceReadsThem()
    {
        using var kit = new FaultServicingKit();
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 2);
        long before = kit.Clock.Now;

        kit.Touch(0, area, 8);
        FaultBatchResult result = kit.Driver.ServiceNextBatch();

        result.Count.Should().Be(8);
        result.PagesMigrated.Should().Be(8);
        kit.Driver.ResidentPages.Should().Be(8);
        kit.CountKind(area, 8, PteKind.DevicePrivate).Should().Be(8);
        kit.CountKind(area + (8 * Page), 504, PteKind.Present).Should().Be(504, "only the faulted pages move on first touch");
        kit.Driver.Statistics.PagesToDevice.Should().Be(8);
        kit.Driver.Statistics.BytesToDevice.Should().Be(8 * Page);
        kit.Gpu.Statistics.PagesCopiedToDevice.Should().Be(8);
        kit.Space.Space.MappedPages.Should().Be(8);
        (kit.Clock.Now - before).Should().BeGreaterThanOrEqualTo(kit.Gpu.Timing.FarFaultLatency + kit.Gpu.Costs.CopyTime(8 * Page));
        result.VirtualTime.Should().Be(kit.Clock.Now - before);

        var read = new byte[8 * Page];
        DeviceAccessResult access = kit.Gpu.Access(kit.Space.Space, area, (ulong)read.Length, DeviceAccessKind.Read, read, 0, replayable: true);
        access.Completed.Should().BeTrue();
        read.Should().Equal(model.AsSpan(0, 8 * Page).ToArray());
    }

    [Fact]
    public void NothingPendingServicesNothingAndChargesNothing()
    {
        using var kit = new FaultServicingKit();
        long before = kit.Clock.Now;

        kit.Driver.ServiceNextBatch().Should().Be(default(FaultBatchResult));

        kit.Clock.Now.Should().Be(before);
        kit.Driver.Statistics.Batches.Should().Be(0);
        kit.Gpu.Statistics.Replays.Should().Be(0);
    }

    [Fact]
    public void ABatchIsChargedTheFarFaultLatencyOnceAndReplayed()
    {
        using var kit = new FaultServicingKit();
        ulong area = kit.MapAligned(Block);   // untouched: holes migrate without a copy
        long before = kit.Clock.Now;
        kit.Touch(0, area, 32);
        long afterTouch = kit.Clock.Now;

        kit.Driver.ServiceNextBatch();

        kit.Gpu.Statistics.Replays.Should().Be(1);
        kit.Gpu.Statistics.PagesCopiedToDevice.Should().Be(0, "holes are zero-filled on the device");
        (kit.Clock.Now - afterTouch).Should().BeGreaterThanOrEqualTo(kit.Gpu.Timing.FarFaultLatency);
        (kit.Clock.Now - afterTouch).Should().BeLessThan(2 * kit.Gpu.Timing.FarFaultLatency);
        afterTouch.Should().BeGreaterThanOrEqualTo(before);
        kit.Driver.ResidentPages.Should().Be(32);
        var read = new byte[32 * Page];
        kit.DeviceAccess(0, area, read, DeviceAccessKind.Read);
        read.Should().OnlyContain(b => b == 0);
    }

    [Fact]
    public void BatchesHoldAtMostTheBatchSize()
    {
        using var kit = new FaultServicingKit(batchSize: 16);
        ulong area = kit.MapFilled(Block, new byte[Block], seed: 3);
        kit.Touch(0, area, 40);

        kit.ServiceAll().Should().Be(3);

        kit.Driver.Statistics.Faults.Should().Be(40);
        kit.Driver.ResidentPages.Should().Be(40);
    }

    [Fact]
    public void ACpuReadBringsADevicePageBackThroughMigrateToRam()
    {
        using var kit = new FaultServicingKit();
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 4);
        kit.Touch(0, area, 4);
        kit.ServiceAll();
        long before = kit.Clock.Now;

        var read = new byte[Page];
        kit.Mm.Read(area + Page, read);

        read.Should().Equal(model.AsSpan(Page, Page).ToArray());
        kit.Driver.Statistics.CpuFaults.Should().Be(1);
        kit.Driver.Statistics.PagesToRamByCpuFault.Should().Be(1);
        kit.Driver.Statistics.BytesToRamByCpuFault.Should().Be(Page);
        kit.Driver.ResidentPages.Should().Be(3);
        kit.Space.Space.TryLookup(area + Page, out _).Should().BeFalse("the device mapping is removed");
        kit.Space.Space.TryLookup(area, out _).Should().BeTrue();
        kit.Mm.ReadPte(area + Page).Kind.Should().Be(PteKind.Present);
        (kit.Clock.Now - before).Should().BeGreaterThanOrEqualTo(kit.Gpu.Timing.CpuFaultLatency + kit.Gpu.Costs.CopyTime(Page));
        kit.Gpu.Statistics.PagesCopiedToHost.Should().Be(1);
    }

    [Fact]
    public void ACpuWriteAfterMigrationIsSeenByTheDevice()
    {
        using var kit = new FaultServicingKit();
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 5);
        kit.Touch(0, area, 2, DeviceAccessKind.Write);
        kit.ServiceAll();

        kit.Mm.Write(area + 10, [1, 2, 3]);
        model[10] = 1;
        model[11] = 2;
        model[12] = 3;
        var read = new byte[2 * Page];
        kit.DeviceAccess(0, area, read, DeviceAccessKind.Read);

        read.Should().Equal(model.AsSpan(0, 2 * Page).ToArray());
        kit.Driver.Statistics.CpuFaults.Should().Be(1);
    }

    [Fact]
    public void OversubscriptionEvictsTheLeastRecentlyUsedBlockAndPreservesEveryByte()
    {
        const int seed = 6;
        using var kit = new FaultServicingKit(deviceBytes: 4L << 20);   // two blocks of device memory
        var model = new byte[3 * Block];
        ulong area = kit.MapFilled(3 * Block, model, seed);
        var random = new Random(seed);

        for (int block = 0; block < 3; block++)
        {
            kit.Touch(0, area + ((ulong)block * Block), 512);
            kit.ServiceAll();
        }

        kit.CountKind(area, 512, PteKind.Present).Should().Be(512, "block 0 was populated first, so it was evicted (seed {0})", seed);
        kit.CountKind(area + Block, 1024, PteKind.DevicePrivate).Should().Be(1024);
        kit.Driver.Statistics.BlocksEvicted.Should().Be(1);
        kit.Driver.Statistics.PagesToRamByEviction.Should().Be(512);
        kit.Driver.Statistics.BytesToRamByEviction.Should().Be(512L * Page);
        kit.Gpu.Statistics.PagesCopiedToHost.Should().Be(512);

        // The device writes random bytes over the whole working set (evicting as it goes), then everything is checked.
        for (int round = 0; round < 20; round++)
        {
            int offset = random.Next(0, model.Length - (3 * Page));
            var bytes = new byte[random.Next(1, 3 * Page)];
            random.NextBytes(bytes);
            kit.DeviceAccess(0, area + (ulong)offset, bytes, DeviceAccessKind.Write);
            bytes.CopyTo(model.AsSpan(offset));
        }

        var device = new byte[model.Length];
        kit.DeviceAccess(0, area, device, DeviceAccessKind.Read);
        device.Should().Equal(model, "the device sees the model (seed {0})", seed);
        var cpu = new byte[model.Length];
        kit.Mm.Read(area, cpu);
        cpu.Should().Equal(model, "the CPU sees the model (seed {0})", seed);
        kit.Driver.Statistics.BlocksEvicted.Should().BeGreaterThan(1);
    }

    [Fact]
    public void AnInjectedAllocationFailureLeavesThePagesInRamMappedInPlace()
    {
        using var kit = new FaultServicingKit();
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 7);
        kit.Gpu.Injection.FailNextAllocations(1);

        kit.Touch(0, area, 16, DeviceAccessKind.Write);
        FaultBatchResult result = kit.Driver.ServiceNextBatch();

        result.PagesMigrated.Should().Be(0);
        result.PagesMappedInPlace.Should().Be(16);
        result.PagesEvicted.Should().Be(0, "free memory was not the problem, so nothing is evicted");
        kit.Driver.Statistics.AllocationShortfalls.Should().Be(1);
        kit.CountKind(area, 16, PteKind.Present).Should().Be(16);
        kit.AssertNoDevicePages();
        kit.Space.Space.TryLookup(area, out DevicePte pte).Should().BeTrue();
        pte.Page.Should().Be(kit.Mm.ReadPte(area).Pfn);
        pte.Flags.Should().HaveFlag(DevicePteFlags.Write);

        var bytes = new byte[16 * Page];
        new Random(7).NextBytes(bytes);
        kit.DeviceAccess(0, area, bytes, DeviceAccessKind.Write);
        var cpu = new byte[16 * Page];
        kit.Mm.Read(area, cpu);
        cpu.Should().Equal(bytes, "the device wrote System RAM in place");
    }

    [Fact]
    public void AnInjectedCopyFailureLeavesThePagesInRamAndLeaksNothing()
    {
        using var kit = new FaultServicingKit();
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 8);
        kit.Gpu.Injection.FailNextCopies(1);

        kit.Touch(0, area, 16);
        FaultBatchResult result = kit.Driver.ServiceNextBatch();

        result.PagesMigrated.Should().Be(0);
        result.PagesMappedInPlace.Should().Be(16);
        kit.Driver.Statistics.CopyFailures.Should().Be(1);
        kit.AssertNoDevicePages();
        kit.CountKind(area, 512, PteKind.Present).Should().Be(512);
        var cpu = new byte[Block];
        kit.Mm.Read(area, cpu);
        cpu.Should().Equal(model);

        // The next touch of other pages migrates normally.
        kit.Touch(0, area + (16 * Page), 4);
        kit.ServiceAll();
        kit.Driver.ResidentPages.Should().Be(4);
    }

    [Fact]
    public void ACopyFailureDuringEvictionKeepsTheDataAndTheEvictionIsRetried()
    {
        using var kit = new FaultServicingKit(deviceBytes: 2L << 20);   // one block of device memory
        var model = new byte[2 * Block];
        ulong area = kit.MapFilled(2 * Block, model, seed: 9);
        kit.Touch(0, area, 512);
        kit.ServiceAll();
        kit.Gpu.Injection.FailNextCopies(1);   // the eviction's copy back

        kit.Touch(0, area + Block, 8);
        kit.ServiceAll();

        kit.Driver.Statistics.CopyFailures.Should().Be(1);
        kit.Driver.Statistics.BlocksEvicted.Should().Be(2, "the failed victim was chosen again and then moved");
        kit.Driver.Statistics.PagesToRamByEviction.Should().Be(512);
        kit.CountKind(area, 512, PteKind.Present).Should().Be(512);
        kit.CountKind(area + Block, 8, PteKind.DevicePrivate).Should().Be(8);
        var cpu = new byte[2 * Block];
        kit.Mm.Read(area, cpu);
        cpu.Should().Equal(model);
        kit.AssertNoDevicePages();
    }

    [Fact]
    public void ADeviceWriteToACopyOnWriteDevicePageAfterForkBreaksTheCopy()
    {
        using var kit = new FaultServicingKit();
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 22);
        kit.Touch(0, area, 4, DeviceAccessKind.Write);
        kit.ServiceAll();
        Mm child = kit.Mm.Fork();

        kit.Touch(0, area, 4, DeviceAccessKind.Write);
        kit.ServiceAll();
        var bytes = new byte[4 * Page];
        new Random(22).NextBytes(bytes);
        kit.DeviceAccess(0, area, bytes, DeviceAccessKind.Write);

        var parent = new byte[4 * Page];
        kit.Mm.Read(area, parent);
        parent.Should().Equal(bytes);
        var seen = new byte[4 * Page];
        child.Read(area, seen);
        seen.Should().Equal(model.AsSpan(0, 4 * Page).ToArray(), "the child keeps the bytes of the fork");
        child.Exit();
    }

    [Fact]
    public void CpuFaultWithACopyFailureGivesSigbusAndKeepsThePage()
    {
        using var kit = new FaultServicingKit();
        ulong area = kit.MapFilled(Block, new byte[Block], seed: 10);
        kit.Touch(0, area, 1);
        kit.ServiceAll();
        kit.Gpu.Injection.FailNextCopies(1);

        Action read = () => kit.Mm.Read(area, new byte[1]);

        read.Should().Throw<SegmentationFaultException>();
        kit.Mm.ReadPte(area).Kind.Should().Be(PteKind.DevicePrivate);
        kit.Driver.ResidentPages.Should().Be(1);
        kit.Driver.Statistics.CopyFailures.Should().Be(1);
    }

    [Fact]
    public void TwoDevicesFaultRemoteDevicePrivatePagesBackToRamAndMigrateThem()
    {
        using var kit = new FaultServicingKit(devices: 2);
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 11);
        kit.Touch(0, area, 64);
        kit.ServiceAll(0);
        kit.Drivers[0].ResidentPages.Should().Be(64);

        kit.Touch(1, area, 64);
        kit.ServiceAll(1);

        kit.Drivers[1].Statistics.RemoteFaults.Should().Be(64);
        kit.Drivers[1].ResidentPages.Should().Be(64);
        kit.Drivers[0].Statistics.CpuFaults.Should().Be(64, "each remote page came back through device 0's migrate_to_ram");
        kit.Drivers[0].ResidentPages.Should().Be(0);
        kit.Spaces[0].Space.MappedPages.Should().Be(0, "device 0 no longer maps the pages it lost");
        kit.Gpus[1].LocalMemory.Contains(kit.Mm.ReadPte(area).Pfn).Should().BeTrue();
        var read = new byte[64 * Page];
        kit.DeviceAccess(1, area, read, DeviceAccessKind.Read);
        read.Should().Equal(model.AsSpan(0, 64 * Page).ToArray());
        kit.DeviceAccess(0, area, read, DeviceAccessKind.Read);
        read.Should().Equal(model.AsSpan(0, 64 * Page).ToArray());
        kit.Drivers[0].ResidentPages.Should().Be(64, "device 0 took them back");
    }

    [Fact]
    public void MunmapRemovesTheDeviceMappingsAndFreesTheDevicePages()
    {
        using var kit = new FaultServicingKit();
        ulong area = kit.MapFilled(Block, new byte[Block], seed: 12);
        kit.Touch(0, area, 100);
        kit.ServiceAll();
        long flushes = kit.Gpu.Statistics.TlbInvalidations;

        kit.Mm.Munmap(area, Block);

        kit.Space.Space.MappedPages.Should().Be(0);
        kit.Gpu.Statistics.TlbInvalidations.Should().BeGreaterThan(flushes);
        kit.Driver.Statistics.Invalidations.Should().BeGreaterThan(0);
        kit.AssertNoDevicePages();
        kit.Touch(0, area, 1);
        kit.Driver.ServiceNextBatch().FaultsUnserviceable.Should().Be(1, "nothing is mapped there any more");
        kit.Driver.Statistics.FaultsUnserviceable.Should().Be(1);
    }

    [Fact]
    public void MprotectRemovesTheDeviceMappingsThenReadsAreMappedInPlaceAndWritesRefused()
    {
        using var kit = new FaultServicingKit();
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 13);
        kit.Touch(0, area, 8, DeviceAccessKind.Write);
        kit.ServiceAll();

        kit.Mm.Mprotect(area, Block, Protection.Read);

        kit.Space.Space.MappedPages.Should().Be(0);
        kit.Driver.ResidentPages.Should().Be(8, "the pages stay in device memory");
        kit.Touch(0, area, 8);
        FaultBatchResult read = kit.Driver.ServiceNextBatch();
        read.PagesMappedInPlace.Should().Be(8);
        read.PagesMigrated.Should().Be(0);
        kit.Space.Space.TryLookup(area, out DevicePte pte).Should().BeTrue();
        pte.Flags.Should().Be(DevicePteFlags.Read);
        kit.Gpu.LocalMemory.Contains(pte.Page).Should().BeTrue();

        kit.Touch(0, area, 2, DeviceAccessKind.Write);
        kit.Driver.ServiceNextBatch().FaultsUnserviceable.Should().Be(2);
        var bytes = new byte[8 * Page];
        kit.DeviceAccess(0, area, bytes, DeviceAccessKind.Read);
        bytes.Should().Equal(model.AsSpan(0, 8 * Page).ToArray());
    }

    [Fact]
    public void PagesOfAFileMappingAreMappedInPlace()
    {
        using var kit = new FaultServicingKit();
        var file = new SimFile(kit.Memory, "data", Block);
        var model = new byte[Block];
        new Random(14).NextBytes(model);
        file.Write(0, model);
        ulong area = kit.Mm.Mmap(0, Block, Protection.ReadWrite, MapFlags.Shared, file);

        kit.Touch(0, area, 16);
        FaultBatchResult result = kit.Driver.ServiceNextBatch();

        result.PagesMigrated.Should().Be(0);
        result.PagesMappedInPlace.Should().Be(16);
        kit.AssertNoDevicePages();
        var read = new byte[16 * Page];
        kit.DeviceAccess(0, area, read, DeviceAccessKind.Read);
        read.Should().Equal(model.AsSpan(0, 16 * Page).ToArray());
    }

    [Fact]
    public void FaultsOnAddressesWithNoAreaAreUnserviceable()
    {
        using var kit = new FaultServicingKit();
        ulong area = kit.MapAligned(Block);
        kit.Mm.Munmap(area, Block);
        kit.Touch(0, area, 3);

        FaultBatchResult result = kit.Driver.ServiceNextBatch();

        result.FaultsUnserviceable.Should().Be(3);
        kit.Driver.Statistics.FaultsUnserviceable.Should().Be(3);
        kit.AssertNoDevicePages();
    }

    [Fact]
    public void FaultsOfAnAddressSpaceTheDriverDoesNotServeAreUnserviceable()
    {
        using var kit = new FaultServicingKit();
        IDeviceAddressSpace foreign = kit.Gpu.CreateAddressSpace("foreign");
        kit.Gpu.Access(foreign, 0x100000, Page, DeviceAccessKind.Read, default, 0, replayable: true);

        kit.Driver.ServiceNextBatch().FaultsUnserviceable.Should().Be(1);
    }

    [Fact]
    public void DetachMovesThePagesBackAndLeaksNothing()
    {
        using var kit = new FaultServicingKit();
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 15);
        kit.Touch(0, area, 300, DeviceAccessKind.Write);
        kit.ServiceAll();

        kit.Space.Dispose();
        kit.Space.Dispose();

        kit.Space.IsDisposed.Should().BeTrue();
        kit.AssertNoDevicePages();
        kit.Space.Space.MappedPages.Should().Be(0);
        kit.Driver.Statistics.PagesToRamByEviction.Should().Be(300);
        var cpu = new byte[Block];
        kit.Mm.Read(area, cpu);
        cpu.Should().Equal(model);
        kit.Driver.Attach(kit.Mm).Dispose();   // the process can attach again
    }

    [Fact]
    public async Task UnbindEvictsEveryPageAndTheDriverRefusesWorkAfterwards()
    {
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });
        var gpu = new SimulatedGpu(memory, "gpu", new SimGpuOptions { MemoryBytes = 4L << 20 });
        var driver = new FaultServicingDriver(gpu);
        var mm = new Mm(memory);
        GpuVaSpace space = driver.Attach(mm);
        var model = new byte[Block];
        new Random(16).NextBytes(model);
        ulong area = mm.Mmap(0, Block, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        mm.Write(area, model);
        for (int i = 0; i < 64; i++)
        {
            gpu.Access(space.Space, area + ((ulong)i * Page), Page, DeviceAccessKind.Read, default, 0, replayable: true);
        }

        driver.ServiceNextBatch();
        driver.ResidentPages.Should().Be(64);

        await gpu.Device.UnbindAsync();

        driver.IsUnbound.Should().BeTrue();
        driver.ResidentPages.Should().Be(0);
        var cpu = new byte[Block];
        mm.Read(area, cpu);
        cpu.Should().Equal(model);
        driver.Invoking(d => d.ServiceNextBatch()).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENODEV);
        driver.Invoking(d => d.Attach(new Mm(memory))).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENODEV);
        space.Dispose();
        mm.Exit();
    }

    [Fact]
    public void ProcessExitFreesTheDevicePages()
    {
        using var kit = new FaultServicingKit();
        ulong area = kit.MapFilled(Block, new byte[Block], seed: 17);
        kit.Touch(0, area, 50);
        kit.ServiceAll();

        kit.Mm.Exit();

        kit.AssertNoDevicePages();
        kit.Space.Space.MappedPages.Should().Be(0);
        kit.Touch(0, area, 1);
        kit.Driver.ServiceNextBatch().FaultsUnserviceable.Should().Be(1);
    }

    [Fact]
    public void SameSeedGivesTheSameStatisticsAndVirtualTime()
    {
        (string Stats, string Device, long Time) first = RunSeeded(18);
        (string Stats, string Device, long Time) second = RunSeeded(18);

        second.Should().Be(first);
        first.Time.Should().BeGreaterThan(0);
    }

    [Fact]
    public void AttachValidatesItsArguments()
    {
        using var kit = new FaultServicingKit();
        var other = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 16UL << 20 });
        var exited = new Mm(kit.Memory, "exited");
        exited.Exit();

        kit.Driver.Invoking(d => d.Attach(null!)).Should().Throw<ArgumentNullException>();
        kit.Driver.Invoking(d => d.Attach(kit.Mm)).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EBUSY);
        kit.Driver.Invoking(d => d.Attach(new Mm(other))).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        kit.Driver.Invoking(d => d.Attach(exited)).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);

        // Nothing changed: the attached space still works.
        ulong area = kit.MapFilled(Block, new byte[Block], seed: 19);
        kit.Touch(0, area, 1);
        kit.Driver.ServiceNextBatch().PagesMigrated.Should().Be(1);
    }

    [Fact]
    public void TheConstructorValidatesItsArguments()
    {
        using var kit = new FaultServicingKit();

        FluentActions.Invoking(() => new FaultServicingDriver(null!)).Should().Throw<ArgumentNullException>();
        FluentActions.Invoking(() => new FaultServicingDriver(kit.Gpu)).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EBUSY);

        ulong area = kit.MapFilled(Block, new byte[Block], seed: 20);
        kit.Touch(0, area, 1);
        kit.Driver.ServiceNextBatch().PagesMigrated.Should().Be(1, "the first driver is still the device's client");
    }

    [Fact]
    public async Task TheConstructorRefusesAnUnbindingDevice()
    {
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 16UL << 20 });
        var gpu = new SimulatedGpu(memory, "gpu", new SimGpuOptions { MemoryBytes = 2L << 20 });
        await gpu.Device.UnbindAsync();

        FluentActions.Invoking(() => new FaultServicingDriver(gpu)).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENODEV);
    }

    [Fact]
    public void AMetadataOnlyMachineMigratesAndEvictsWithoutData()
    {
        using var kit = new FaultServicingKit(deviceBytes: 2L << 20, storeData: false);
        ulong area = kit.MapAligned(3 * Block);
        for (int block = 0; block < 3; block++)
        {
            kit.Touch(0, area + ((ulong)block * Block), 512, DeviceAccessKind.Write);
            kit.ServiceAll();
        }

        kit.Driver.Statistics.PagesToDevice.Should().Be(3 * 512);
        kit.Driver.Statistics.PagesToRamByEviction.Should().Be(2 * 512);
        kit.Driver.ResidentPages.Should().Be(512);
    }

    [Fact]
    public void CpuFaultsRacingTheServicingThreadPreserveEveryByte()
    {
        const int seed = 21;
        using var kit = new FaultServicingKit(deviceBytes: 4L << 20);
        var model = new byte[3 * Block];
        ulong area = kit.MapFilled(3 * Block, model, seed);
        using var stop = new CancellationTokenSource();
        Exception? cpuError = null;
        var cpu = new Thread(() =>
        {
            var random = new Random(seed + 1);
            var bytes = new byte[64];
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    int offset = random.Next(0, model.Length - bytes.Length);
                    kit.Mm.Read(area + (ulong)offset, bytes);
                    if (!bytes.AsSpan().SequenceEqual(model.AsSpan(offset, bytes.Length)))
                    {
                        throw new InvalidOperationException($"CPU read wrong bytes at +0x{offset:x} (seed {seed}).");
                    }
                }
            }
            catch (Exception e)
            {
                Volatile.Write(ref cpuError, e);
            }
        });
        cpu.Start();
        var random = new Random(seed);
        for (int round = 0; round < 40; round++)
        {
            int block = random.Next(0, 3);
            kit.Touch(0, area + ((ulong)block * Block), 512);
            kit.ServiceAll();
        }

        stop.Cancel();
        cpu.Join();
        cpuError.Should().BeNull();
        var device = new byte[model.Length];
        kit.DeviceAccess(0, area, device, DeviceAccessKind.Read);
        device.Should().Equal(model, "seed {0}", seed);
        kit.Space.Dispose();
        kit.AssertNoDevicePages();
    }

    [Fact]
    public void APolicyCanMigrateTheWholeBlockOnFirstTouchWithoutTouchingTheDriver()
    {
        var policy = new WholeBlockPolicy();
        using var kit = new FaultServicingKit(policy: policy);
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 23);
        kit.Mm.Munmap(area + Block - (16 * Page), 16 * Page);   // the area ends before the block does

        kit.Touch(0, area + (100 * Page), 1);
        FaultBatchResult result = kit.Driver.ServiceNextBatch();

        result.Count.Should().Be(1);
        result.PagesMigrated.Should().Be(496, "every page of the block that has an area moves");
        policy.Populated.Should().Be(1);
        kit.CountKind(area, 496, PteKind.DevicePrivate).Should().Be(496);
        var read = new byte[496 * Page];
        kit.DeviceAccess(0, area, read, DeviceAccessKind.Read);
        read.Should().Equal(model.AsSpan(0, 496 * Page).ToArray());
        kit.Driver.Statistics.Faults.Should().Be(1, "the prefetched pages were mapped with the faulted one");
    }

    [Fact]
    public void DeviceCoherentMemoryIsReadByTheCpuWithoutMigratingBack()
    {
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });
        var gpu = new SimulatedGpu(memory, "coherent", new SimGpuOptions { MemoryBytes = 2L << 20, MemoryType = MemoryType.DeviceCoherent });
        var driver = new FaultServicingDriver(gpu);
        var mm = new Mm(memory);
        GpuVaSpace space = driver.Attach(mm);
        var model = new byte[2 * Block];
        new Random(24).NextBytes(model);
        ulong area = mm.Mmap(0, 2 * Block, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        mm.Write(area, model);
        for (int i = 0; i < 1024; i++)
        {
            gpu.Access(space.Space, area + ((ulong)i * Page), Page, DeviceAccessKind.Read, default, 0, replayable: true);
            if (gpu.Faults.Pending >= 256)
            {
                driver.ServiceNextBatch();
            }
        }

        while (gpu.Faults.Pending > 0)
        {
            driver.ServiceNextBatch();
        }

        driver.Statistics.PagesToDevice.Should().Be(1024);
        driver.Statistics.PagesToRamByEviction.Should().Be(512, "one block of device memory for two blocks of data");
        var cpu = new byte[2 * Block];
        mm.Read(area, cpu);
        cpu.Should().Equal(model);
        driver.Statistics.CpuFaults.Should().Be(0, "coherent memory is CPU-accessible");
        space.Dispose();
        driver.ResidentPages.Should().Be(0);
        mm.Exit();
        gpu.Device.Unbind(TimeSpan.FromSeconds(10));
    }

    [Theory]
    [InlineData(25)]
    [InlineData(26)]
    [InlineData(27)]
    public void InvalidationsRacingTheServicingThreadLeaveNoStaleDeviceMapping(int seed)
    {
        using var kit = new FaultServicingKit(deviceBytes: 4L << 20);
        ulong area = kit.MapFilled(3 * Block, new byte[3 * Block], seed);
        using var stop = new CancellationTokenSource();
        Exception? cpuError = null;
        var cpu = new Thread(() =>
        {
            var random = new Random(seed + 1);
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    ulong start = area + ((ulong)random.Next(0, (3 * 512) - 16) * Page);
                    switch (random.Next(3))
                    {
                        case 0:
                            kit.Mm.Madvise(start, 16 * Page, Advice.DontNeed);
                            break;
                        case 1:
                            kit.Mm.Mprotect(start, 16 * Page, Protection.Read);
                            kit.Mm.Mprotect(start, 16 * Page, Protection.ReadWrite);
                            break;
                        default:
                            kit.Mm.Write(start, [1, 2, 3]);
                            break;
                    }
                }
            }
            catch (Exception e)
            {
                Volatile.Write(ref cpuError, e);
            }
        });
        cpu.Start();
        var random = new Random(seed);
        for (int round = 0; round < 60 && Volatile.Read(ref cpuError) is null; round++)
        {
            ulong page = (ulong)random.Next(0, (3 * 512) - 128);
            kit.Touch(0, area + (page * Page), 128, random.Next(2) == 0 ? DeviceAccessKind.Read : DeviceAccessKind.Write);
            kit.ServiceAll();
        }

        stop.Cancel();
        cpu.Join();
        cpuError.Should().BeNull("the CPU thread's calls succeed (seed {0})", seed);

        // One last round with the CPU quiet, so there are mappings to check whatever the race left.
        kit.Touch(0, area, 128, DeviceAccessKind.Write);
        kit.ServiceAll();
        int mapped = 0;
        for (int i = 0; i < 3 * 512; i++)
        {
            ulong address = area + ((ulong)i * Page);
            if (kit.Space.Space.TryLookup(address, out DevicePte device))
            {
                mapped++;
                Pte pte = kit.Mm.ReadPte(address);
                pte.Kind.Should().BeOneOf([PteKind.Present, PteKind.DevicePrivate], "page {0} is mapped by the device (seed {1})", i, seed);
                pte.Pfn.Should().Be(device.Page, "the device maps the page the CPU maps at page {0} (seed {1})", i, seed);
                if ((device.Flags & DevicePteFlags.Write) != 0)
                {
                    pte.IsWritable.Should().BeTrue("a device write mapping needs a writable CPU entry at page {0} (seed {1})", i, seed);
                }
            }
        }

        mapped.Should().BeGreaterThan(0, "the last touches left mappings to check (seed {0})", seed);
        kit.Driver.Statistics.Invalidations.Should().BeGreaterThan(0);
        kit.Space.Dispose();
        kit.AssertNoDevicePages();
    }

    [Fact]
    public void AtomicFaultsOnPagesLeftInRamGetDeviceExclusiveAccessUntilTheCpuTouchesThem()
    {
        using var kit = new FaultServicingKit();
        var model = new byte[Block];
        ulong area = kit.MapFilled(Block, model, seed: 26);
        kit.Gpu.Injection.FailNextAllocations(1);

        kit.Touch(0, area, 2, DeviceAccessKind.Atomic);
        FaultBatchResult result = kit.Driver.ServiceNextBatch();

        result.PagesMappedInPlace.Should().Be(2);
        kit.CountKind(area, 2, PteKind.DeviceExclusive).Should().Be(2);
        kit.Space.Space.TryLookup(area, out DevicePte pte).Should().BeTrue();
        pte.Flags.Should().HaveFlag(DevicePteFlags.Atomic);
        kit.Gpu.Access(kit.Space.Space, area, 2 * Page, DeviceAccessKind.Atomic, default, 0, replayable: true).Completed.Should().BeTrue();

        var read = new byte[Page];
        kit.Mm.Read(area, read);

        read.Should().Equal(model.AsSpan(0, Page).ToArray());
        kit.Space.Space.TryLookup(area, out _).Should().BeFalse("the CPU access revoked the exclusive access");
        kit.Space.Space.TryLookup(area + Page, out _).Should().BeTrue();
        kit.AssertNoDevicePages();
    }

    [Fact]
    public void AtomicFaultsOnSharedFilePagesAreRefused()
    {
        using var kit = new FaultServicingKit();
        var file = new SimFile(kit.Memory, "atomic", Block);
        ulong area = kit.Mm.Mmap(0, Block, Protection.ReadWrite, MapFlags.Shared, file);

        kit.Touch(0, area, 3, DeviceAccessKind.Atomic);

        kit.Driver.ServiceNextBatch().FaultsUnserviceable.Should().Be(3);
        kit.Space.Space.MappedPages.Should().Be(0);
    }

    private static (string Stats, string Device, long Time) RunSeeded(int seed)
    {
        using var kit = new FaultServicingKit(deviceBytes: 4L << 20, batchSize: 64);
        var model = new byte[4 * Block];
        ulong area = kit.MapFilled(4 * Block, model, seed);
        var random = new Random(seed);
        for (int round = 0; round < 30; round++)
        {
            ulong page = (ulong)random.Next(0, 4 * 512);
            int count = random.Next(1, 200);
            kit.Touch(0, area + (page * Page), (int)Math.Min((ulong)count, (4 * 512) - page),
                random.Next(2) == 0 ? DeviceAccessKind.Read : DeviceAccessKind.Write);
            kit.ServiceAll();
            if (random.Next(4) == 0)
            {
                kit.Mm.Read(area + (ulong)random.Next(0, model.Length - 100), new byte[100]);
            }
        }

        return (kit.Driver.Statistics.ToString(), kit.Gpu.Statistics.ToString(), kit.Clock.Now);
    }

    private sealed class WholeBlockPolicy : IResidencyPolicy
    {
        private readonly LruResidencyPolicy _lru = new();

        public int Populated { get; private set; }

        public void SelectPagesToMigrate(int block, ulong address, ReadOnlySpan<ulong> faulted, ReadOnlySpan<ulong> resident, Span<ulong> migrate) =>
            migrate.Fill(ulong.MaxValue);

        public int SelectVictim(int busyBlock) => _lru.SelectVictim(busyBlock);

        public void BlockPopulated(int block)
        {
            Populated++;
            _lru.BlockPopulated(block);
        }

        public void BlockEvictionIncomplete(int block) => _lru.BlockEvictionIncomplete(block);

        public void BlockEmptied(int block) => _lru.BlockEmptied(block);
    }
}
