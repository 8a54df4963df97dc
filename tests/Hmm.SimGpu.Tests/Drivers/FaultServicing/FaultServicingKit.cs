using FluentAssertions;
using Hmm.Devices;
using Hmm.Drivers;
using Hmm.SimGpu;

namespace Hmm.SimGpu.Tests.Drivers.FaultServicing;

/// <summary>A machine, one or more simulated GPUs with a fault-servicing driver each, and a process.</summary>
internal sealed class FaultServicingKit : IDisposable
{
    public const int Page = PageSize.Bytes;
    public const ulong Block = 2UL << 20;

    public FaultServicingKit(long deviceBytes = 8L << 20, int devices = 1, bool storeData = true, int batchSize = 256,
        ulong ramBytes = 64UL << 20, IResidencyPolicy? policy = null)
    {
        Memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = ramBytes, StorePageData = storeData });
        Clock = new VirtualClock();
        Gpus = new SimulatedGpu[devices];
        Drivers = new FaultServicingDriver[devices];
        for (int i = 0; i < devices; i++)
        {
            Gpus[i] = new SimulatedGpu(Memory, $"gpu{i}", new SimGpuOptions { MemoryBytes = deviceBytes, FaultBatchSize = batchSize }, Clock);
            Drivers[i] = new FaultServicingDriver(Gpus[i], i == 0 ? policy : null);
        }

        Mm = new Mm(Memory, "process");
        Spaces = new GpuVaSpace[devices];
        for (int i = 0; i < devices; i++)
        {
            Spaces[i] = Drivers[i].Attach(Mm);
        }
    }

    public PhysicalMemory Memory { get; }

    public VirtualClock Clock { get; }

    public SimulatedGpu[] Gpus { get; }

    public FaultServicingDriver[] Drivers { get; }

    public GpuVaSpace[] Spaces { get; }

    public Mm Mm { get; }

    public SimulatedGpu Gpu => Gpus[0];

    public FaultServicingDriver Driver => Drivers[0];

    public GpuVaSpace Space => Spaces[0];

    /// <summary>An anonymous private read-write area, 2 MiB aligned, filled by the CPU with a seeded pattern.</summary>
    public ulong MapFilled(ulong bytes, byte[] model, int seed)
    {
        ulong area = MapAligned(bytes);
        new Random(seed).NextBytes(model);
        Mm.Write(area, model);
        return area;
    }

    public ulong MapAligned(ulong bytes)
    {
        ulong raw = Mm.Mmap(0, bytes + Block, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        ulong area = (raw + Block - 1) & ~(Block - 1);
        if (area > raw)
        {
            Mm.Munmap(raw, area - raw);
        }

        Mm.Munmap(area + bytes, raw + Block - area);
        return area;
    }

    /// <summary>Every page of the range is touched once by device <paramref name="gpu"/> (engine = page index), raising a fault per unmapped page.</summary>
    public void Touch(int gpu, ulong address, int pages, DeviceAccessKind kind = DeviceAccessKind.Read)
    {
        for (int i = 0; i < pages; i++)
        {
            Gpus[gpu].Access(Spaces[gpu].Space, address + ((ulong)i * Page), Page, kind, default, i % 64, replayable: true);
        }
    }

    /// <summary>Services batches until the fault buffer is empty; returns how many batches it took.</summary>
    public int ServiceAll(int gpu = 0)
    {
        int batches = 0;
        while (Gpus[gpu].Faults.Pending > 0)
        {
            Drivers[gpu].ServiceNextBatch();
            batches++;
        }

        return batches;
    }

    /// <summary>The device accesses the whole range with data, servicing faults until the access completes.</summary>
    public void DeviceAccess(int gpu, ulong address, Span<byte> data, DeviceAccessKind kind)
    {
        ulong done = 0;
        for (int round = 0; round < 100_000; round++)
        {
            DeviceAccessResult result = Gpus[gpu].Access(Spaces[gpu].Space, address + done, (ulong)data.Length - done, kind,
                data[(int)done..], 0, replayable: true);
            done += result.BytesDone;
            if (result.Completed)
            {
                return;
            }

            ServiceAll(gpu);
        }

        throw new InvalidOperationException($"The device access at 0x{address + done:x} never completed.");
    }

    /// <summary>The device's memory holds no page any more, and the driver accounts none.</summary>
    public void AssertNoDevicePages()
    {
        for (int i = 0; i < Gpus.Length; i++)
        {
            Drivers[i].ResidentPages.Should().Be(0, $"driver {i} must account no device page");
            Gpus[i].LocalMemory.FreePages.Should().Be(Gpus[i].LocalMemory.CapacityPages, $"device {i} must have every page back");
        }
    }

    public int CountKind(ulong address, int pages, PteKind kind)
    {
        int count = 0;
        for (int i = 0; i < pages; i++)
        {
            if (Mm.ReadPte(address + ((ulong)i * Page)).Kind == kind)
            {
                count++;
            }
        }

        return count;
    }

    public void Dispose()
    {
        foreach (GpuVaSpace space in Spaces)
        {
            space.Dispose();
        }

        if (Mm.IsAlive)
        {
            Mm.Exit();
        }

        foreach (SimulatedGpu gpu in Gpus)
        {
            gpu.Device.Unbind(TimeSpan.FromSeconds(10));
        }
    }
}
