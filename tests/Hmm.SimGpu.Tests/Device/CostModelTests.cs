using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class CostModelTests
{
    [Fact]
    public void TheDefaultsAreUvmSmarts()
    {
        var costs = new SimGpuCostModel();

        costs.FarFaultLatency.Should().Be(45_000);
        costs.PcieBandwidth.Should().Be(12e9);
        costs.PcieCurveSlope.Should().Be(0.07292);
        new SimGpuOptions().FaultBatchSize.Should().Be(256);
        new SimGpuOptions().ChunkBytes.Should().Be(2 * MiB);
    }

    [Theory]
    [InlineData(0L, 0L)]
    [InlineData(4096L, 1_890L)]          // (2a/pi)atan(0.07292 * 4) = 2.168 GB/s
    [InlineData(65536L, 6_310L)]         // 10.39 GB/s
    [InlineData(2097152L, 175_511L)]     // 11.95 GB/s
    public void CopyTimeFollowsThePcieCurve(long bytes, long nanoseconds)
    {
        new SimGpuCostModel().CopyTime(bytes).Should().Be(nanoseconds);
    }

    [Fact]
    public void BandwidthRisesWithTransferSizeAsFitted()
    {
        var costs = new SimGpuCostModel();

        double small = 4096 / (costs.CopyTime(4096) / 1e9);
        double large = 2097152 / (costs.CopyTime(2097152) / 1e9);

        small.Should().BeApproximately(2.17e9, 0.01e9, "about 2.2 GB/s at 4 KiB");
        large.Should().BeApproximately(11.95e9, 0.01e9, "about 12 GB/s at 2 MiB");
    }

    [Fact]
    public void AWholeChunkCopyIsOneTransferAtTheTwoMegabyteRate()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        (SimulatedGpu peer, _) = NewGpu(machine, "gpu1", clock: gpu.VirtualClock);
        Pfn[] source = AllocateUnlocked(peer, 512);
        Pfn[] destination = AllocateUnlocked(gpu, 512);

        gpu.CopyEngine.Copy(source, destination, out CopyCompletion completion).Should().Be(Errno.None);

        completion.Transfers.Should().Be(1);
        (completion.End - completion.Start).Should().Be(gpu.Options.Costs.CopyTime(2 * MiB), "the peer curve defaults to the PCIe one");
    }

    [Fact]
    public void PageByPageCopiesCostTheSmallTransferRate()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 3);
        Pfn[] ram = RamPages(machine, 3, seed: 1);
        Pfn[] scattered = [device[0], device[2], device[1]];

        gpu.CopyEngine.Copy(ram, scattered, out CopyCompletion completion).Should().Be(Errno.None);

        long perTransfer = gpu.Options.Costs.CopyTime(PageSize.Bytes);
        (completion.End - completion.Start).Should().Be(completion.Transfers * perTransfer);
    }

    [Fact]
    public void TheEngineRunsBatchesOneAfterAnotherAndTheClockOnlyMovesWhenWaited()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 2);
        Pfn[] ram = RamPages(machine, 2, seed: 2);
        long copy = gpu.Options.Costs.CopyTime(PageSize.Bytes);

        gpu.CopyEngine.Copy(ram.AsSpan(0, 1), device.AsSpan(0, 1), out CopyCompletion first).Should().Be(Errno.None);
        gpu.CopyEngine.Copy(ram.AsSpan(1, 1), device.AsSpan(1, 1), out CopyCompletion second).Should().Be(Errno.None);

        first.Should().Be(new CopyCompletion(0, copy, PageSize.Bytes, 1));
        second.Should().Be(new CopyCompletion(copy, 2 * copy, PageSize.Bytes, 1));
        gpu.Clock.Now.Should().Be(0, "a copy is queued; the driver waits for it");

        gpu.Clock.AdvanceTo(second.End).Should().Be(2 * copy);
        gpu.Clock.Advance(1_000);
        gpu.CopyEngine.Copy(ram.AsSpan(0, 1), device.AsSpan(0, 1), out CopyCompletion third).Should().Be(Errno.None);
        third.Start.Should().Be((2 * copy) + 1_000, "an idle engine starts at the current time");
    }

    [Fact]
    public void TlbInvalidationsAndReplaysAreChargedOnTheClock()
    {
        PhysicalMemory machine = NewMachine();
        var options = new SimGpuOptions { MemoryBytes = 8 * MiB, Costs = new SimGpuCostModel { TlbInvalidateLatency = 700, ReplayLatency = 300 } };
        (SimulatedGpu gpu, _) = NewGpu(machine, options: options);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");

        space.InvalidateTlb(DeviceVa, 16 * Page);
        gpu.Faults.Replay();

        gpu.Clock.Now.Should().Be(1_000);
        gpu.Statistics.TlbInvalidations.Should().Be(1);
        gpu.Statistics.Replays.Should().Be(1);
        gpu.Timing.Should().Be(new DeviceTiming(45_000, 20_000, 700));
    }

    [Fact]
    public void AccessesAreChargedAtLocalAndRemoteBandwidth()
    {
        PhysicalMemory machine = NewMachine();
        var costs = new SimGpuCostModel { LocalMemoryBandwidth = 4096e9, RemoteAccessBandwidth = 4096e6 };
        (SimulatedGpu gpu, _) = NewGpu(machine, options: new SimGpuOptions { MemoryBytes = 8 * MiB, Costs = costs });
        Pfn[] device = AllocateUnlocked(gpu, 1);
        Pfn[] ram = RamPages(machine, 1, seed: 4);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        space.Map(DeviceVa, device, DevicePteFlags.Read);
        space.Map(DeviceVa + Page, ram, DevicePteFlags.Read);

        gpu.Access(space, DeviceVa, 2 * Page, DeviceAccessKind.Read, default, 0, replayable: false).Completed.Should().BeTrue();

        gpu.Clock.Now.Should().Be(1 + 1_000, "4 KiB at 4096 GB/s is 1 ns, at 4.096 GB/s 1 us");
    }
}
