using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class ConcurrencyTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void ThreadsAllocatingFreeingAndAccessingLoseNoPageAndNoByte(int seed)
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, RecordingClient client) = NewGpu(machine, memoryMiB: 4);
        IDeviceAddressSpace shared = gpu.CreateAddressSpace("shared");
        const int threads = 4;
        const int rounds = 60;
        var errors = new List<string>();

        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            var random = new Random((seed * 100) + t);
            ulong baseVa = DeviceVa + ((ulong)t << 30);
            for (int round = 0; round < rounds; round++)
            {
                var pages = new Pfn[1 + random.Next(300)];
                int got = gpu.LocalMemory.Allocate(pages);
                Pfn[] mine = pages[..got];
                foreach (Pfn page in mine)
                {
                    machine.UnlockPage(page);
                }

                if (got > 0)
                {
                    shared.Map(baseVa, mine, DevicePteFlags.Read | DevicePteFlags.Write);
                    byte[] data = Pattern(got * PageSize.Bytes, (seed * 1000) + round);
                    var back = new byte[data.Length];
                    DeviceAccessResult write = gpu.Access(shared, baseVa, (ulong)data.Length, DeviceAccessKind.Write, data, t, true);
                    DeviceAccessResult read = gpu.Access(shared, baseVa, (ulong)data.Length, DeviceAccessKind.Read, back, t, true);
                    if (!write.Completed || !read.Completed || !back.AsSpan().SequenceEqual(data))
                    {
                        lock (errors)
                        {
                            errors.Add($"thread {t} round {round}: data lost (seed {seed})");
                        }
                    }

                    shared.Unmap(baseVa, (ulong)got * Page);
                    shared.InvalidateTlb(baseVa, (ulong)got * Page);
                }

                PutAll(machine, mine);
            }
        })).ToList();

        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());

        errors.Should().BeEmpty();
        gpu.LocalMemory.FreePages.Should().Be(gpu.LocalMemory.CapacityPages, $"seed {seed}");
        shared.MappedPages.Should().Be(0);
        SimGpuStatistics stats = gpu.Statistics;
        stats.PagesAllocated.Should().Be(stats.PagesFreed);
        client.Freed.Should().HaveCount((int)stats.PagesFreed);
        gpu.Faults.Pending.Should().Be(0);
    }
}
