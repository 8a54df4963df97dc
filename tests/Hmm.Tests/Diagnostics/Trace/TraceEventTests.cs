using System.Runtime.CompilerServices;
using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Diagnostics.Trace;

public class TraceEventTests
{
    [Fact]
    public void AnEventIsOneSixtyFourByteRecord()
    {
        Unsafe.SizeOf<TraceEvent>().Should().Be(TraceEvent.Size).And.Be(64);
    }

    [Fact]
    public void TheFactoriesCoverEveryKind()
    {
        TraceTestKit.OneOfEachKind().Select(e => e.Kind).Should()
            .BeEquivalentTo(Enum.GetValues<TraceEventKind>().Where(k => k != TraceEventKind.None));
    }

    [Fact]
    public void EachKindReadsBackWhatItsFactoryWasGiven()
    {
        TraceEvent[] events = TraceTestKit.OneOfEachKind();

        events[0].AsCpuFault().Should().Be((0x7f00_1000UL, FaultFlags.Write, VmFaultResult.None));
        events[1].AsDeviceFault().Should().Be((0x7f00_2000UL, TraceDeviceAccess.Atomic));
        events[2].AsFaultBatch().Should().Be((7u, 32UL, 5UL, 900L));
        events[3].AsRangeFault().Should().Be((0x7f00_0000UL, 16UL, 2UL, Errno.EFAULT));
        events[4].AsInvalidate().Should().Be((0x7f00_0000UL, 0x7f01_0000UL, MmuNotifierEvent.Migrate, 3UL));
        events[5].AsMigrateSetup().Should().Be((TraceDirection.HostToDevice, MigrateVmaSelect.System, 0x7f00_0000UL, 16UL, 14UL));
        events[6].AsMigratePages().Should().Be((TraceDirection.HostToDevice, 0x7f00_0000UL, 16UL, 13UL));
        events[7].AsMigrateFinalize().Should().Be((TraceDirection.HostToDevice, 0x7f00_0000UL, 13UL, 1UL));
        events[8].AsCopy().Should().Be((2u, TraceDirection.DeviceToHost, 65536UL, 1600L));
        events[9].AsEvict().Should().Be((0x10_0000UL, 512UL));
        events[10].AsTlbInvalidate().Should().Be((0x7f00_0000UL, 0x7f00_4000UL));
        events[11].AsDeviceAlloc().Should().Be((0x10_0200UL, 16UL, 528UL));
        events[12].AsDeviceFree().Should().Be((0x10_0200UL, 16UL, 512UL));
        events[13].AsPagemapLifetime().Should().Be((42UL, TracePagemapChange.Idle, 0UL));
        events[14].AsRunConfiguration().Should().Be((3u, 96UL << 20));
        events[15].AsPhase().Should().Be((2u, 4096UL));
        events[16].AsKernelLaunch().Should().Be((2048UL, 4096UL, 4096UL));
        events[17].AsDeviceAccess().Should().Be((511u, 0x7f00_3200UL, 512UL, TraceDeviceAccess.Write, true, 32_775UL));
        events[18].AsCpuAccess().Should().Be((0x7f00_4000UL, 4096UL, true));
    }

    [Fact]
    public void TheCommonFieldsSayWhereAndWhen()
    {
        TraceEvent copy = TraceEvent.Copy(3, 0, TraceDirection.HostToDevice, 4096, 1000, 1500);
        TraceEvent fault = TraceEvent.CpuFault(0x1000, FaultFlags.None, VmFaultResult.None, 7);

        copy.Engine.Should().Be(TraceEngine.CopyEngine);
        copy.Device.Should().Be(3);
        copy.VirtualNs.Should().Be(1000, "a span's start is the event's time");
        fault.Engine.Should().Be(TraceEngine.Cpu);
        fault.ThreadId.Should().Be(Environment.CurrentManagedThreadId);
        fault.WallTicks.Should().Be(0, "the writer stamps the wall clock");
        fault.Sequence.Should().Be(0, "the writer stamps the sequence number");
    }

    [Fact]
    public void AnAccessThatDoesNotEndItsItemAndAReadKeepTheirFlagsClear()
    {
        TraceEvent read = TraceEvent.DeviceAccess(0, 3, 0x1000, 64, TraceDeviceAccess.Read, false, 7, 10);
        TraceEvent cpuRead = TraceEvent.CpuAccess(0x1000, 4096, false, 10);

        read.Flags.Should().Be(0);
        read.Engine.Should().Be(TraceEngine.Compute);
        read.AsDeviceAccess().EndsItem.Should().BeFalse();
        cpuRead.Flags.Should().Be(0);
        cpuRead.AsCpuAccess().Write.Should().BeFalse();
    }

    [Fact]
    public void ReadingAnEventAsAnotherKindIsRefused()
    {
        TraceEvent fault = TraceEvent.CpuFault(0x1000, FaultFlags.None, VmFaultResult.None, 7);

        Action read = () => fault.AsCopy();

        read.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
    }
}
