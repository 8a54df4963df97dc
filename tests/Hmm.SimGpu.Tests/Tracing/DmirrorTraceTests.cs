using FluentAssertions;
using Hmm.Drivers;
using Hmm.SimGpu.Tests.Drivers.Dmirror;
using Xunit;

namespace Hmm.SimGpu.Tests.Tracing;

/// <summary>The dmirror driver's trace events: its hmm_range_fault calls and its evictions on release.</summary>
public sealed class DmirrorTraceTests
{
    private const ulong Page = DmirrorMachine.PageBytes;

    [Fact]
    public async Task AReadRecordsItsRangeFaultAndAReleaseRecordsOneEvictPerChunk()
    {
        var machine = new DmirrorMachine(devices: 2);
        Hmm.Drivers.Dmirror second = machine.Devices[1].Open(machine.Mm);
        ulong area = machine.Map(4);
        machine.Fill(area, 4);
        ushort device = machine.Gpus[1].Device.TraceId;
        device.Should().Be(1);

        List<TraceEvent> events = TraceCapture.Record(machine.Memory, () =>
        {
            var read = new DmirrorCommand { Address = area, Pages = 4 };
            second.Read(ref read, new byte[4 * Page]).Should().Be(Errno.None);
            machine.MigrateToDevice(area, 3, second).Result.Should().Be(Errno.None);
            var release = new DmirrorCommand { Address = area, Pages = 4 };
            second.Release(ref release).Should().Be(Errno.None);
        });

        TraceEvent range = events.OfKind(TraceEventKind.RangeFault).Should().ContainSingle().Subject;
        range.Device.Should().Be(device);
        range.AsRangeFault().Should().Be((area, 4UL, 0UL, Errno.None));
        events.OfKind(TraceEventKind.MigrateFinalize).Select(e => (e.Device, e.AsMigrateFinalize().Direction, e.AsMigrateFinalize().Moved))
            .Should().Equal((device, TraceDirection.HostToDevice, 3UL), (device, TraceDirection.DeviceToHost, 3UL));
        TraceEvent evict = events.OfKind(TraceEventKind.Evict).Should().ContainSingle("only the chunk holding the pages had any").Subject;
        evict.Device.Should().Be(device);
        evict.AsEvict().Pages.Should().Be(3);
        second.Dispose();
        await machine.TeardownAsync();
    }
}
