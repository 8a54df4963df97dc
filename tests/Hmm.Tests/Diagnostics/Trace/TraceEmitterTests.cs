using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Diagnostics.Trace;

public class TraceEmitterTests
{
    [Fact]
    public void WithNoWriterTracingIsOffAndEmittingDoesNothing()
    {
        var emitter = new TraceEmitter();
        TraceEvent fault = TraceEvent.CpuFault(0x1000, FaultFlags.None, VmFaultResult.None, 1);

        long bytes = AllocationProbe.FewestBytesAllocated(() =>
        {
            for (int i = 0; i < 10_000; i++)
            {
                emitter.Emit(fault);
            }
        });

        emitter.IsEnabled.Should().BeFalse();
        emitter.Writer.Should().BeNull();
        bytes.Should().Be(0);
    }

    [Fact]
    public async Task AnAttachedWriterRecordsWhatIsEmittedUntilDetached()
    {
        var emitter = new TraceEmitter();
        using var stream = new MemoryStream();
        using (var writer = TraceWriter.Create(stream, leaveOpen: true))
        {
            emitter.Attach(writer);
            emitter.IsEnabled.Should().BeTrue();
            emitter.Emit(TraceEvent.Evict(0, 1, 1, 1));
            emitter.Emit(TraceEvent.Evict(0, 2, 1, 2));

            emitter.Detach().Should().BeSameAs(writer);
            emitter.Emit(TraceEvent.Evict(0, 3, 1, 3));
            emitter.IsEnabled.Should().BeFalse();
        }

        (await TraceTestKit.ReadAllAsync(stream.ToArray())).Select(e => e.A).Should().Equal(1UL, 2UL);
    }

    [Fact]
    public void AttachingASecondWriterIsRefusedAndTheFirstStays()
    {
        var emitter = new TraceEmitter();
        using var first = TraceWriter.Create(Stream.Null);
        using var second = TraceWriter.Create(Stream.Null);
        emitter.Attach(first);

        Action attach = () => emitter.Attach(second);

        attach.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EBUSY);
        emitter.Writer.Should().BeSameAs(first);
        emitter.Invoking(e => e.Attach(first)).Should().NotThrow("attaching the attached writer again changes nothing");
    }

    [Fact]
    public void EmittingIntoADisposedWriterDropsTheEventWithoutThrowing()
    {
        var emitter = new TraceEmitter();
        var writer = TraceWriter.Create(Stream.Null);
        emitter.Attach(writer);
        writer.Dispose();

        emitter.Invoking(e => e.Emit(TraceEvent.Evict(0, 1, 1, 1))).Should().NotThrow();
        writer.EventsWritten.Should().Be(0);
    }

    [Fact]
    public void AttachingNullIsRefused()
    {
        new TraceEmitter().Invoking(e => e.Attach(null!)).Should().Throw<ArgumentNullException>();
    }

    [Fact]
    public void VirtualNowReadsTheFirstClockSetAndIsZeroWithoutOne()
    {
        var emitter = new TraceEmitter();
        emitter.VirtualNow.Should().Be(0);
        long now = 42;

        emitter.UseVirtualClock(() => now).Should().BeTrue();
        emitter.UseVirtualClock(() => -1).Should().BeFalse("the first clock stays: devices of one machine share it");

        emitter.VirtualNow.Should().Be(42);
        now = 43;
        emitter.VirtualNow.Should().Be(43);
    }

    [Fact]
    public void UsingANullClockIsRefusedAndChangesNothing()
    {
        var emitter = new TraceEmitter();

        emitter.Invoking(e => e.UseVirtualClock(null!)).Should().Throw<ArgumentNullException>();

        emitter.UseVirtualClock(() => 7).Should().BeTrue("no clock was set by the refused call");
        emitter.VirtualNow.Should().Be(7);
    }

    [Fact]
    public void EachMachineHasItsOwnEmitterOffUntilAWriterIsAttached()
    {
        var first = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 16UL << 20 });
        var second = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 16UL << 20 });

        first.Trace.Should().NotBeNull().And.BeSameAs(first.Trace);
        first.Trace.Should().NotBeSameAs(second.Trace);
        first.Trace.IsEnabled.Should().BeFalse();
    }
}
