using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class FaultBufferTests
{
    [Fact]
    public void DuplicateFaultsInOneBatchAreMerged()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        IDeviceAddressSpace other = gpu.CreateAddressSpace("other");
        Fault(gpu, space, DeviceVa, DeviceAccessKind.Read);
        Fault(gpu, space, DeviceVa + Page, DeviceAccessKind.Read);
        Fault(gpu, space, DeviceVa + 8, DeviceAccessKind.Read);             // same page, same kind: merged
        Fault(gpu, space, DeviceVa, DeviceAccessKind.Write);                // same page, another kind: kept
        Fault(gpu, other, DeviceVa, DeviceAccessKind.Read);                 // another space: kept
        Fault(gpu, space, DeviceVa + Page, DeviceAccessKind.Read);          // merged
        var faults = new DeviceFault[8];

        FaultBatchInfo batch = gpu.Faults.FetchBatch(faults);

        batch.Should().Be(new FaultBatchInfo(4, 2, 6));
        faults.Take(4).Select(f => (f.Space.Name, f.Address, f.Access)).Should().Equal(
            ("vm", DeviceVa, DeviceAccessKind.Read),
            ("vm", DeviceVa + Page, DeviceAccessKind.Read),
            ("vm", DeviceVa, DeviceAccessKind.Write),
            ("other", DeviceVa, DeviceAccessKind.Read));
        gpu.Faults.Pending.Should().Be(0);
        gpu.Statistics.DuplicatesMerged.Should().Be(2);
        gpu.Faults.FetchBatch(faults).Should().Be(new FaultBatchInfo(0, 0, 0));
    }

    private static void Fault(SimulatedGpu gpu, IDeviceAddressSpace space, ulong address, DeviceAccessKind kind) =>
        gpu.Access(space, address, 1, kind, default, engine: 0, replayable: true).Completed.Should().BeFalse();
}
