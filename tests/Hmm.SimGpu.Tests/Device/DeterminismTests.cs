using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class DeterminismTests
{
    [Theory]
    [InlineData(5)]
    [InlineData(6)]
    public void TheSameOperationsGiveTheSameClockAndStatistics(int seed)
    {
        (long Now, SimGpuStatistics Stats, long Free) first = Run(seed);
        (long Now, SimGpuStatistics Stats, long Free) second = Run(seed);

        second.Should().Be(first, $"seed {seed}");
        first.Now.Should().BeGreaterThan(0);
    }

    /// <summary>A seeded mix of faults, batches, copies, accesses, invalidations and frees on a fresh machine.</summary>
    private static (long Now, SimGpuStatistics Stats, long Free) Run(int seed)
    {
        PhysicalMemory machine = NewMachine(storePageData: seed % 2 == 0);
        (SimulatedGpu gpu, _) = NewGpu(machine, memoryMiB: 4);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        var random = new Random(seed);
        var faults = new DeviceFault[gpu.Faults.BatchSize];
        var held = new List<Pfn>();
        for (int step = 0; step < 300; step++)
        {
            ulong va = DeviceVa + ((ulong)random.Next(2048) * Page);
            switch (random.Next(5))
            {
                case 0:
                    gpu.Access(space, va, (ulong)(1 + random.Next(3 * PageSize.Bytes)), (DeviceAccessKind)random.Next(3), default, random.Next(4), true);
                    break;
                case 1:
                    FaultBatchInfo batch = gpu.Faults.FetchBatch(faults);
                    for (int i = 0; i < batch.Count; i++)
                    {
                        var page = new Pfn[1];
                        if (gpu.LocalMemory.Allocate(page) == 1)
                        {
                            machine.UnlockPage(page[0]);
                            held.Add(page[0]);
                            Pfn ram = machine.AllocatePage();
                            gpu.CopyEngine.Copy([ram], page, out CopyCompletion done);
                            gpu.Clock.AdvanceTo(done.End);
                            machine.PutPage(ram);
                            space.Map(faults[i].Address, page, DevicePteFlags.Read | DevicePteFlags.Write | DevicePteFlags.Atomic);
                        }
                    }

                    gpu.Clock.Advance(gpu.Timing.FarFaultLatency);
                    gpu.Faults.Replay();
                    break;
                case 2:
                    space.Unmap(va, 16 * Page);
                    space.InvalidateTlb(va, 16 * Page);
                    break;
                case 3:
                    if (held.Count > 0)
                    {
                        int index = random.Next(held.Count);
                        space.Unmap(DeviceVa, 2048 * Page);
                        machine.PutPage(held[index]);
                        held.RemoveAt(index);
                    }

                    break;
                default:
                    space.Protect(va, 4 * Page, DevicePteFlags.Read);
                    break;
            }
        }

        return (gpu.Clock.Now, gpu.Statistics, gpu.LocalMemory.FreePages);
    }
}
