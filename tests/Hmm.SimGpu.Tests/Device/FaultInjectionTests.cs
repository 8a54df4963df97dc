using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class FaultInjectionTests
{
    [Fact]
    public void AFailedCopyCopiesNoByteAndChargesNothing()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] ram = RamPages(machine, 4, seed: 21);
        Pfn[] device = AllocateUnlocked(gpu, 4);
        byte[] before = Bytes(machine, device);
        gpu.Injection.FailNextCopies(1);

        Errno result = gpu.CopyEngine.Copy(ram, device, out CopyCompletion failed);

        result.Should().Be(Errno.EIO);
        failed.Bytes.Should().Be(0);
        Bytes(machine, device).Should().Equal(before);
        gpu.Clock.Now.Should().Be(0);
        gpu.Statistics.FailedCopies.Should().Be(1);
        gpu.Statistics.PagesCopiedToDevice.Should().Be(0);

        gpu.CopyEngine.Copy(ram, device, out CopyCompletion retried).Should().Be(Errno.None, "only the next copy was to fail");
        retried.Start.Should().Be(0, "the failed copy did not occupy the engine");
        Bytes(machine, device).Should().Equal(Bytes(machine, ram));
    }

    [Fact]
    public void AFailedAllocationLeaksNoPage()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] first = AllocateUnlocked(gpu, 2);
        long free = gpu.LocalMemory.FreePages;
        gpu.Injection.FailNextAllocations(2);
        var pages = new Pfn[8];

        gpu.LocalMemory.Allocate(pages).Should().Be(0);
        gpu.LocalMemory.Allocate(pages).Should().Be(0);

        gpu.LocalMemory.FreePages.Should().Be(free);
        pages.Should().OnlyContain(p => p == default(Pfn));
        gpu.Statistics.FailedAllocations.Should().Be(2);
        Pfn[] next = AllocateUnlocked(gpu, 2);
        next.Should().Equal(first[1] + 1, first[1] + 2);
        gpu.Statistics.PagesAllocated.Should().Be(4);
    }

    [Fact]
    public void ADelayShowsInTheCompletionTime()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] ram = RamPages(machine, 1, seed: 5);
        Pfn[] device = AllocateUnlocked(gpu, 1);
        long copy = gpu.Options.Costs.CopyTime(PageSize.Bytes);
        gpu.Injection.DelayNextCopies(1, 50_000);

        gpu.CopyEngine.Copy(ram, device, out CopyCompletion delayed).Should().Be(Errno.None);
        gpu.CopyEngine.Copy(ram, device, out CopyCompletion normal).Should().Be(Errno.None);

        delayed.End.Should().Be(copy + 50_000);
        normal.Should().Be(new CopyCompletion(delayed.End, delayed.End + copy, PageSize.Bytes, 1));
        Bytes(machine, device).Should().Equal(Bytes(machine, ram), "a delayed copy still copies");
        gpu.Statistics.DelayedCopies.Should().Be(1);
    }

    [Fact]
    public void AnInvalidCopyDoesNotConsumeTheInjectedFailure()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 1);
        gpu.Injection.FailNextCopies(1);

        Action invalid = () => gpu.CopyEngine.Copy(device, [PhysicalMemory.ZeroPage], out _);

        invalid.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        gpu.CopyEngine.Copy(device, device, out _).Should().Be(Errno.EIO);
    }

    [Fact]
    public void NegativeInjectionsAreRefused()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);

        Action[] calls =
        [
            () => gpu.Injection.FailNextAllocations(-1),
            () => gpu.Injection.FailNextCopies(-1),
            () => gpu.Injection.DelayNextCopies(-1, 10),
            () => gpu.Injection.DelayNextCopies(1, -10),
        ];

        foreach (Action call in calls)
        {
            call.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        }

        AllocateUnlocked(gpu, 1).Should().ContainSingle("nothing was injected");
    }
}
