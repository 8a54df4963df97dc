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

    [Fact]
    public void ABatchTakesAtMostTheBatchSizeOldestFirst()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine, options: new SimGpuOptions { MemoryBytes = 8 * MiB, FaultBatchSize = 3 });
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        for (ulong i = 0; i < 5; i++)
        {
            Fault(gpu, space, DeviceVa + (i * Page), DeviceAccessKind.Read);
        }

        var faults = new DeviceFault[8];

        gpu.Faults.FetchBatch(faults).Should().Be(new FaultBatchInfo(3, 0, 3));
        faults[2].Address.Should().Be(DeviceVa + (2 * Page));
        gpu.Faults.Pending.Should().Be(2);
        gpu.Faults.FetchBatch(faults).Should().Be(new FaultBatchInfo(2, 0, 2));
        faults[0].Address.Should().Be(DeviceVa + (3 * Page));
        gpu.Statistics.BatchesFetched.Should().Be(2);
        gpu.Statistics.FaultsFetched.Should().Be(5);
    }

    [Fact]
    public void ASmallDestinationLeavesTheRestPendingButMergesWhatItCan()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        Fault(gpu, space, DeviceVa, DeviceAccessKind.Read);
        Fault(gpu, space, DeviceVa, DeviceAccessKind.Read);
        Fault(gpu, space, DeviceVa + Page, DeviceAccessKind.Read);
        Fault(gpu, space, DeviceVa, DeviceAccessKind.Read);
        var one = new DeviceFault[1];

        gpu.Faults.FetchBatch(one).Should().Be(new FaultBatchInfo(1, 1, 2));

        gpu.Faults.Pending.Should().Be(2, "the second distinct fault did not fit, and stays first in line");
        gpu.Faults.FetchBatch(one).Should().Be(new FaultBatchInfo(1, 0, 1));
        one[0].Address.Should().Be(DeviceVa + Page);
    }

    [Fact]
    public void AFullBufferDropsFaultsAndCountsTheOverflowButTheAccessStillStops()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine, options: new SimGpuOptions { MemoryBytes = 8 * MiB, FaultBufferEntries = 2, FaultBatchSize = 2 });
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");

        for (ulong i = 0; i < 4; i++)
        {
            Fault(gpu, space, DeviceVa + (i * Page), DeviceAccessKind.Write);
        }

        gpu.Faults.Pending.Should().Be(2);
        gpu.Statistics.FaultsRaised.Should().Be(4);
        gpu.Statistics.FaultBufferOverflows.Should().Be(2);
        var faults = new DeviceFault[4];
        gpu.Faults.FetchBatch(faults).Count.Should().Be(2);
        faults[1].Address.Should().Be(DeviceVa + Page, "the oldest faults were kept");
        Fault(gpu, space, DeviceVa, DeviceAccessKind.Write);
        gpu.Faults.Pending.Should().Be(1, "a drained buffer takes faults again");
    }

    [Fact]
    public void DuplicatesInDifferentBatchesAreNotMerged()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine, options: new SimGpuOptions { MemoryBytes = 8 * MiB, FaultBatchSize = 2 });
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        Fault(gpu, space, DeviceVa, DeviceAccessKind.Read);
        Fault(gpu, space, DeviceVa + Page, DeviceAccessKind.Read);
        Fault(gpu, space, DeviceVa, DeviceAccessKind.Read);
        var faults = new DeviceFault[4];

        gpu.Faults.FetchBatch(faults).Should().Be(new FaultBatchInfo(2, 0, 2));
        gpu.Faults.FetchBatch(faults).Should().Be(new FaultBatchInfo(1, 0, 1));
    }

    [Fact]
    public void ManyBatchesOfDuplicatesMergeTheSameWay()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        var faults = new DeviceFault[256];
        var random = new Random(8);

        for (int round = 0; round < 50; round++)
        {
            var pages = new HashSet<ulong>();
            for (int i = 0; i < 256; i++)
            {
                ulong page = (ulong)random.Next(64);
                pages.Add(page);
                Fault(gpu, space, DeviceVa + (page * Page), DeviceAccessKind.Read);
            }

            FaultBatchInfo batch = gpu.Faults.FetchBatch(faults);

            batch.Count.Should().Be(pages.Count, $"round {round}, seed 8");
            batch.DuplicatesMerged.Should().Be(256 - pages.Count);
            faults.Take(batch.Count).Select(f => f.Address).Should().OnlyHaveUniqueItems();
        }
    }

    private static void Fault(SimulatedGpu gpu, IDeviceAddressSpace space, ulong address, DeviceAccessKind kind) =>
        gpu.Access(space, address, 1, kind, default, engine: 0, replayable: true).Completed.Should().BeFalse();
}
