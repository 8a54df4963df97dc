using FluentAssertions;
using Hmm.Devices;

namespace Hmm.SimGpu.Tests.Device;

/// <summary>Small machines and GPUs for the device-level tests, a recording memory client, and byte helpers.</summary>
internal static class DeviceTestKit
{
    public const long MiB = 1L << 20;

    public const ulong Page = PageSize.Bytes;

    /// <summary>A device virtual address well away from 0, 2 MiB aligned.</summary>
    public const ulong DeviceVa = 0x7f00_0000_0000UL;

    public static PhysicalMemory NewMachine(long ramMiB = 32, bool storePageData = true) =>
        new(new PhysicalMemoryOptions { RamBytes = (ulong)(ramMiB * MiB), StorePageData = storePageData });

    /// <summary>A GPU with <paramref name="memoryMiB"/> of memory in 2 MiB chunks and a recording client attached.</summary>
    public static (SimulatedGpu Gpu, RecordingClient Client) NewGpu(
        PhysicalMemory machine, string name = "gpu0", long memoryMiB = 8, VirtualClock? clock = null, SimGpuOptions? options = null)
    {
        options ??= new SimGpuOptions { MemoryBytes = memoryMiB * MiB };
        var gpu = new SimulatedGpu(machine, name, options, clock);
        var client = new RecordingClient();
        gpu.LocalMemory.Attach(client);
        return (gpu, client);
    }

    /// <summary>Allocates exactly <paramref name="count"/> device pages and unlocks them (a driver's set-up done).</summary>
    public static Pfn[] AllocateUnlocked(SimulatedGpu gpu, int count)
    {
        var pages = new Pfn[count];
        gpu.LocalMemory.Allocate(pages).Should().Be(count);
        foreach (Pfn page in pages)
        {
            gpu.Memory.UnlockPage(page);
        }

        return pages;
    }

    /// <summary>Allocates <paramref name="count"/> RAM pages filled with a pattern from <paramref name="seed"/>.</summary>
    public static Pfn[] RamPages(PhysicalMemory machine, int count, int seed)
    {
        var pages = new Pfn[count];
        for (int i = 0; i < count; i++)
        {
            pages[i] = machine.AllocatePage();
            if (machine.StoresPageData)
            {
                Pattern(PageSize.Bytes, seed + i).CopyTo(machine.PageData(pages[i]));
            }
        }

        return pages;
    }

    /// <summary>Drops the caller's reference to each page (their last: device pages go back to the pool).</summary>
    public static void PutAll(PhysicalMemory machine, IEnumerable<Pfn> pages)
    {
        foreach (Pfn page in pages)
        {
            machine.PutPage(page);
        }
    }

    public static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>The bytes of several pages, concatenated.</summary>
    public static byte[] Bytes(PhysicalMemory machine, IReadOnlyList<Pfn> pages)
    {
        var bytes = new byte[pages.Count * PageSize.Bytes];
        for (int i = 0; i < pages.Count; i++)
        {
            machine.ReadPageData(pages[i]).CopyTo(bytes.AsSpan(i * PageSize.Bytes));
        }

        return bytes;
    }

    /// <summary>A memory client that records what the device tells it and answers CPU faults with a chosen result.</summary>
    internal sealed class RecordingClient : IDeviceMemoryClient
    {
        private readonly Lock _lock = new();
        private readonly List<Pfn> _freed = [];
        private int _migrateToRamCalls;

        public VmFaultResult MigrateToRamResult { get; set; } = VmFaultResult.Sigbus;

        public int MigrateToRamCalls => Volatile.Read(ref _migrateToRamCalls);

        public IReadOnlyList<Pfn> Freed
        {
            get
            {
                lock (_lock)
                {
                    return [.. _freed];
                }
            }
        }

        public VmFaultResult MigrateToRam(in DevicePrivateFault fault)
        {
            Interlocked.Increment(ref _migrateToRamCalls);
            return MigrateToRamResult;
        }

        public void PageFreed(Pfn page)
        {
            lock (_lock)
            {
                _freed.Add(page);
            }
        }
    }
}
