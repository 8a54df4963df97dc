using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class CopyEngineTests
{
    [Fact]
    public void CopiesMoveRealBytesToTheDeviceAndBack()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] ram = RamPages(machine, 4, seed: 11);
        byte[] expected = Bytes(machine, ram);
        Pfn[] device = AllocateUnlocked(gpu, 4);

        gpu.CopyEngine.Copy(ram, device, out CopyCompletion toDevice).Should().Be(Errno.None);
        Pfn[] back = [.. Enumerable.Range(0, 4).Select(_ => machine.AllocatePage())];
        gpu.CopyEngine.Copy(device, back, out CopyCompletion toHost).Should().Be(Errno.None);

        Bytes(machine, device).Should().Equal(expected);
        Bytes(machine, back).Should().Equal(expected);
        toDevice.Bytes.Should().Be(4 * PageSize.Bytes);
        toHost.Start.Should().Be(toDevice.End, "the engine runs one batch at a time");
        SimGpuStatistics stats = gpu.Statistics;
        stats.PagesCopiedToDevice.Should().Be(4);
        stats.PagesCopiedToHost.Should().Be(4);
        stats.BytesCopiedToHost.Should().Be(4 * PageSize.Bytes);
        stats.CopyBatches.Should().Be(2);
    }

    [Fact]
    public void ConsecutiveFramesFormOneTransfer()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 8);

        gpu.CopyEngine.Copy(device.AsSpan(0, 4), device.AsSpan(4), out CopyCompletion run).Should().Be(Errno.None);
        gpu.CopyEngine.Copy(device.AsSpan(0, 4), [device[4], device[6], device[5], device[7]], out CopyCompletion split).Should().Be(Errno.None);

        run.Transfers.Should().Be(1);
        split.Transfers.Should().Be(4, "no destination follows the one before it");
        gpu.Statistics.Transfers.Should().Be(5);
        gpu.Statistics.PagesCopiedDeviceToDevice.Should().Be(8);
    }
}
