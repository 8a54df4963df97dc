using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class AccessTests
{
    [Fact]
    public void AccessReadsAndWritesThroughTheDevicePageTable()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 2);
        Pfn[] ram = RamPages(machine, 1, seed: 3);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        space.Map(DeviceVa, device, DevicePteFlags.Read | DevicePteFlags.Write);
        space.Map(DeviceVa + (2 * Page), ram, DevicePteFlags.Read);
        byte[] written = Pattern(2 * PageSize.Bytes, seed: 5);

        DeviceAccessResult write = gpu.Access(space, DeviceVa, 2 * Page, DeviceAccessKind.Write, written, engine: 0, replayable: true);
        var read = new byte[3 * PageSize.Bytes];
        DeviceAccessResult readBack = gpu.Access(space, DeviceVa, 3 * Page, DeviceAccessKind.Read, read, engine: 0, replayable: true);

        write.Should().Be(new DeviceAccessResult(2 * Page, 0, true));
        readBack.Completed.Should().BeTrue();
        read.AsSpan(0, 2 * PageSize.Bytes).ToArray().Should().Equal(written);
        read.AsSpan(2 * PageSize.Bytes).ToArray().Should().Equal(machine.ReadPageData(ram[0]).ToArray());
        Bytes(machine, device).Should().Equal(written);
        gpu.Faults.Pending.Should().Be(0);
        gpu.Clock.Now.Should().BeGreaterThan(0, "accesses are charged");
    }

    [Fact]
    public void AnAccessAfterItsLeafWasEmptiedAndReusedElsewhereFaults()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 1);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        const ulong OtherLeaf = DeviceVa + (4UL << 20);
        space.Map(DeviceVa, device, DevicePteFlags.Read);
        gpu.Access(space, DeviceVa, 64, DeviceAccessKind.Read, default, engine: 0, replayable: false).Completed.Should().BeTrue();

        // Emptying the leaf puts its array on the spare list; mapping 4 MiB further on takes it again.
        space.Unmap(DeviceVa, Page);
        space.Map(OtherLeaf, device, DevicePteFlags.Read);

        gpu.Access(space, DeviceVa, 64, DeviceAccessKind.Read, default, engine: 0, replayable: false)
            .Should().Be(new DeviceAccessResult(0, DeviceVa, false));
        gpu.Access(space, OtherLeaf, 64, DeviceAccessKind.Read, default, engine: 0, replayable: false).Completed.Should().BeTrue();
        space.TryLookup(DeviceVa, out _).Should().BeFalse();
    }

    [Fact]
    public void AccessStatisticsSumEveryAddressSpace()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 1);
        IDeviceAddressSpace first = gpu.CreateAddressSpace("first");
        IDeviceAddressSpace second = gpu.CreateAddressSpace("second");
        first.Map(DeviceVa, device, DevicePteFlags.Read);

        gpu.Access(first, DeviceVa, 100, DeviceAccessKind.Read, default, engine: 0, replayable: true);
        gpu.Access(second, DeviceVa, 100, DeviceAccessKind.Read, default, engine: 1, replayable: true);
        gpu.Access(second, DeviceVa, 100, DeviceAccessKind.Write, default, engine: 1, replayable: false);

        SimGpuStatistics statistics = gpu.Statistics;
        statistics.Accesses.Should().Be(3);
        statistics.AccessesStopped.Should().Be(2);
        statistics.BytesAccessed.Should().Be(100);
        statistics.FaultsRaised.Should().Be(1, "only the replayable stopped access records a fault");
    }

    [Fact]
    public void AMissingPageStopsTheAccessAndRaisesAFault()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 1);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        space.Map(DeviceVa, device, DevicePteFlags.Read | DevicePteFlags.Write);
        byte[] data = Pattern(2 * PageSize.Bytes, seed: 9);

        DeviceAccessResult result = gpu.Access(space, DeviceVa + 100, 2 * Page, DeviceAccessKind.Write, data, engine: 3, replayable: true);

        result.Should().Be(new DeviceAccessResult(Page - 100, DeviceVa + Page, false));
        machine.ReadPageData(device[0])[100..].ToArray().Should().Equal(data.AsSpan(0, PageSize.Bytes - 100).ToArray());
        var faults = new DeviceFault[4];
        FaultBatchInfo batch = gpu.Faults.FetchBatch(faults);
        batch.Should().Be(new FaultBatchInfo(1, 0, 1));
        faults[0].Space.Should().BeSameAs(space);
        faults[0].Address.Should().Be(DeviceVa + Page);
        faults[0].Access.Should().Be(DeviceAccessKind.Write);
        faults[0].Engine.Should().Be(3);
        faults[0].Timestamp.Should().Be(gpu.Clock.Now, "raised once the part done was charged");
        gpu.Statistics.AccessesStopped.Should().Be(1);
        gpu.Statistics.BytesAccessed.Should().Be((long)(Page - 100));
    }

    [Theory]
    [InlineData(DevicePteFlags.Read, DeviceAccessKind.Write)]
    [InlineData(DevicePteFlags.Read | DevicePteFlags.Write, DeviceAccessKind.Atomic)]
    public void AnInsufficientPermissionStopsTheAccess(DevicePteFlags flags, DeviceAccessKind kind)
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 1);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        space.Map(DeviceVa, device, flags);
        byte[] before = machine.ReadPageData(device[0]).ToArray();

        DeviceAccessResult result = gpu.Access(space, DeviceVa, 8, kind, new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, engine: 0, replayable: false);

        result.Should().Be(new DeviceAccessResult(0, DeviceVa, false));
        machine.ReadPageData(device[0]).ToArray().Should().Equal(before);
        gpu.Faults.Pending.Should().Be(0, "a non-replayable access raises no fault record");
    }
}
