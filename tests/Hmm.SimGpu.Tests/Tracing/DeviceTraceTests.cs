using FluentAssertions;
using Hmm.Devices;
using Hmm.SimGpu.Tests.Device;
using Xunit;

namespace Hmm.SimGpu.Tests.Tracing;

/// <summary>The simulated GPU's trace events: faults entering the fault buffer, copies, TLB invalidations, memory.</summary>
public sealed class DeviceTraceTests
{
    private const ulong Page = DeviceTestKit.Page;
    private const ulong Va = DeviceTestKit.DeviceVa;

    private readonly PhysicalMemory _machine = DeviceTestKit.NewMachine();

    [Fact]
    public void ADeviceFaultEntersTheFaultBufferOnTheFaultUnitOfItsDevice()
    {
        var clock = new VirtualClock();
        (SimulatedGpu first, _) = DeviceTestKit.NewGpu(_machine, "gpu0", clock: clock);
        (SimulatedGpu second, _) = DeviceTestKit.NewGpu(_machine, "gpu1", clock: clock);
        IDeviceAddressSpace space0 = first.CreateAddressSpace("p");
        IDeviceAddressSpace space1 = second.CreateAddressSpace("p");

        List<TraceEvent> events = TraceCapture.Record(_machine, () =>
        {
            first.Access(space0, Va + 8, 8, DeviceAccessKind.Write, default, 0, replayable: true);
            clock.Advance(100);
            second.Access(space1, Va + Page, 8, DeviceAccessKind.Atomic, default, 1, replayable: true);
            first.Access(space0, Va + (2 * Page), 8, DeviceAccessKind.Read, default, 2, replayable: false);   // not replayable: no record
        });

        List<TraceEvent> faults = events.OfKind(TraceEventKind.DeviceFault);
        faults.Should().HaveCount(2);
        faults.Should().OnlyContain(e => e.Engine == TraceEngine.FaultUnit);
        faults[0].Device.Should().Be(first.Device.TraceId).And.Be(0);
        faults[0].AsDeviceFault().Should().Be((Va, TraceDeviceAccess.Write));
        faults[1].Device.Should().Be(second.Device.TraceId).And.Be(1);
        faults[1].AsDeviceFault().Should().Be((Va + Page, TraceDeviceAccess.Atomic));
        faults[1].VirtualNs.Should().Be(faults[0].VirtualNs + 100);
    }

    [Fact]
    public void ACopyRecordsItsBytesDirectionEngineAndSpanOnTheVirtualClock()
    {
        (SimulatedGpu gpu, _) = DeviceTestKit.NewGpu(_machine);
        Pfn[] ram = DeviceTestKit.RamPages(_machine, 4, seed: 1);
        Pfn[] device = DeviceTestKit.AllocateUnlocked(gpu, 4);
        CopyCompletion toDevice = default;
        CopyCompletion toHost = default;

        List<TraceEvent> events = TraceCapture.Record(_machine, () =>
        {
            gpu.CopyEngine.Copy(ram, device, out toDevice).Should().Be(Errno.None);
            gpu.CopyEngine.Copy(device.AsSpan(0, 2), ram.AsSpan(0, 2), out toHost).Should().Be(Errno.None);
        });

        List<TraceEvent> copies = events.OfKind(TraceEventKind.Copy);
        copies.Should().HaveCount(2);
        copies.Should().OnlyContain(e => e.Engine == TraceEngine.CopyEngine && e.Device == gpu.Device.TraceId);
        copies[0].VirtualNs.Should().Be(toDevice.Start);
        copies[0].AsCopy().Should().Be((0u, TraceDirection.HostToDevice, 4 * Page, toDevice.End));
        copies[1].VirtualNs.Should().Be(toHost.Start);
        copies[1].AsCopy().Should().Be((0u, TraceDirection.DeviceToHost, 2 * Page, toHost.End));
        copies[0].VirtualNs.Should().BeLessThan(copies[0].AsCopy().EndNs);
        copies[1].VirtualNs.Should().BeGreaterThanOrEqualTo(copies[0].AsCopy().EndNs, "the engine runs one batch at a time");
        DeviceTestKit.PutAll(_machine, ram);
        DeviceTestKit.PutAll(_machine, device);
    }

    [Fact]
    public void ATlbInvalidationRecordsItsRangeAndWhenItStarted()
    {
        (SimulatedGpu gpu, _) = DeviceTestKit.NewGpu(_machine);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("p");
        long before = gpu.VirtualClock.Now;

        List<TraceEvent> events = TraceCapture.Record(_machine, () => space.InvalidateTlb(Va, 3 * Page));

        TraceEvent tlb = events.OfKind(TraceEventKind.TlbInvalidate).Should().ContainSingle().Subject;
        tlb.Device.Should().Be(gpu.Device.TraceId);
        tlb.AsTlbInvalidate().Should().Be((Va, Va + (3 * Page)));
        tlb.VirtualNs.Should().Be(before);
    }

    [Fact]
    public void DeviceMemoryAllocationAndFreeRecordThePagesInUseAfterwards()
    {
        (SimulatedGpu gpu, _) = DeviceTestKit.NewGpu(_machine);
        var pages = new Pfn[3];

        List<TraceEvent> events = TraceCapture.Record(_machine, () =>
        {
            gpu.LocalMemory.Allocate(pages).Should().Be(3);
            foreach (Pfn page in pages)
            {
                _machine.UnlockPage(page);
            }

            _machine.PutPage(pages[1]);
        });

        TraceEvent alloc = events.OfKind(TraceEventKind.DeviceAlloc).Should().ContainSingle().Subject;
        alloc.Device.Should().Be(gpu.Device.TraceId);
        alloc.AsDeviceAlloc().Should().Be((pages[0].Value, 3UL, 3UL));
        TraceEvent free = events.OfKind(TraceEventKind.DeviceFree).Should().ContainSingle().Subject;
        free.AsDeviceFree().Should().Be((pages[1].Value, 1UL, 2UL));
        _machine.PutPage(pages[0]);
        _machine.PutPage(pages[2]);
    }
}
