using Hmm.Drivers;
using Hmm.SimGpu;

namespace Hmm.SimGpu.Tests.Drivers.Dmirror;

/// <summary>
/// A machine for the driver's tests: System RAM, one or two simulated GPUs (8 MiB each, in 2 MiB chunks) with a
/// <see cref="DmirrorDevice"/> each, one process and a mirror of it on the first device.
/// </summary>
internal sealed class DmirrorMachine
{
    public const int PageBytes = PageSize.Bytes;

    public DmirrorMachine(MemoryType type = MemoryType.DevicePrivate, int devices = 1, bool storePageData = true)
    {
        Memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20, StorePageData = storePageData });
        Clock = new VirtualClock();
        Gpus = new SimulatedGpu[devices];
        Devices = new DmirrorDevice[devices];
        for (int i = 0; i < devices; i++)
        {
            Gpus[i] = new SimulatedGpu(Memory, $"gpu{i}", new SimGpuOptions { MemoryType = type, MemoryBytes = 8L << 20, ChunkBytes = 2L << 20 }, Clock);
            Devices[i] = new DmirrorDevice(Gpus[i]);
        }

        Mm = new Mm(Memory, "process");
        Mirror = Device.Open(Mm);
    }

    public PhysicalMemory Memory { get; }

    public VirtualClock Clock { get; }

    public SimulatedGpu[] Gpus { get; }

    public DmirrorDevice[] Devices { get; }

    public SimulatedGpu Gpu => Gpus[0];

    public DmirrorDevice Device => Devices[0];

    public Mm Mm { get; }

    public Hmm.Drivers.Dmirror Mirror { get; }

    /// <summary>An anonymous private area of <paramref name="pages"/> pages.</summary>
    public ulong Map(int pages, Protection protection = Protection.ReadWrite) =>
        Mm.Mmap(0, (ulong)pages * PageBytes, protection, MapFlags.Private | MapFlags.Anonymous);

    /// <summary>Fills each page of an area with a distinct pattern through the CPU.</summary>
    public byte[] Fill(ulong address, int pages, int seed = 1)
    {
        byte[] data = Pattern(pages, seed);
        Mm.Write(address, data);
        return data;
    }

    /// <summary>What the CPU reads.</summary>
    public byte[] CpuRead(ulong address, int pages)
    {
        var data = new byte[pages * PageBytes];
        Mm.Read(address, data);
        return data;
    }

    /// <summary>The mirror's snapshot of a range, which must succeed.</summary>
    public DmirrorSnapshot[] Snapshot(ulong address, int pages, Hmm.Drivers.Dmirror? mirror = null)
    {
        var command = new DmirrorCommand { Address = address, Pages = (ulong)pages };
        var states = new byte[pages];
        Errno result = (mirror ?? Mirror).Snapshot(ref command, states);
        if (result != Errno.None)
        {
            throw new InvalidOperationException($"Snapshot failed: {result}.");
        }

        return Array.ConvertAll(states, s => (DmirrorSnapshot)s);
    }

    /// <summary>Migrates a range to the device; returns the result and the command.</summary>
    public (Errno Result, DmirrorCommand Command, byte[] Buffer) MigrateToDevice(ulong address, int pages, Hmm.Drivers.Dmirror? mirror = null)
    {
        var command = new DmirrorCommand { Address = address, Pages = (ulong)pages };
        var buffer = new byte[pages * PageBytes];
        Errno result = (mirror ?? Mirror).MigrateToDevice(ref command, buffer);
        return (result, command, buffer);
    }

    public static byte[] Pattern(int pages, int seed)
    {
        var data = new byte[pages * PageBytes];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (byte)((i * 31) + (i / PageBytes * 7) + seed);
        }

        return data;
    }

    /// <summary>Closes the mirror, exits the process and unbinds every device, as the end of a test.</summary>
    public async Task TeardownAsync()
    {
        Mirror.Dispose();
        Mm.Exit();
        foreach (SimulatedGpu gpu in Gpus)
        {
            await gpu.Device.UnbindAsync();
        }
    }
}
