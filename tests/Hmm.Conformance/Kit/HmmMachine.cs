using FluentAssertions;
using Hmm.Drivers;
using Hmm.SimGpu;

namespace Hmm.Conformance;

/// <summary>
/// One machine for one selftest: System RAM, the test process, and the test module's four dmirror devices
/// (<c>/dev/hmm_dmirror0</c> to <c>3</c>: units 0 and 1 device-private, 2 and 3 device-coherent), each a
/// <see cref="DmirrorDevice"/> on its own <see cref="SimulatedGpu"/>, all on one <see cref="VirtualClock"/>. A unit is
/// created the first time it is opened, so a scenario pays only for the devices it uses (the fork scenarios' child
/// always opens unit 0, also in the coherent variants, as the selftests do).
/// </summary>
/// <remarks>
/// Teardown checks what the kernel's module unload would: every file closes (returns 0), every device page comes
/// back to its device, the devices unbind, and every RAM page the scenario used is free again (the page cache of the
/// scenario's files excepted, which lives as long as the file).
/// </remarks>
internal sealed class HmmMachine : IAsyncDisposable
{
    /// <summary><c>NPAGES</c>: HMM_BUFFER_SIZE (4 MiB) in 4 KiB pages.</summary>
    public const int Npages = 1024;

    /// <summary><c>PMD / PAGE</c>: pages in a 2 MiB PMD.</summary>
    public const int PmdPages = 512;

    /// <summary>The selftests' <c>read_pmd_pagesize()</c>, 2 MiB.</summary>
    public const ulong PmdBytes = PmdPages * (ulong)PageSize.Bytes;

    /// <summary><c>NTIMES</c>: the repeat count of the multiple and teardown scenarios.</summary>
    public const int NTimes = 10;

    private const ulong RamBytes = 256UL << 20;
    private const long DeviceMemoryBytes = 64L << 20;
    private const int Units = 4;

    private readonly SimulatedGpu?[] _gpus = new SimulatedGpu?[Units];
    private readonly DmirrorDevice?[] _drivers = new DmirrorDevice?[Units];
    private readonly List<Dmirror> _open = [];
    private readonly List<Mm> _live = [];
    private readonly List<SimFile> _files = [];
    private readonly ulong _freeAtStart;

    public HmmMachine()
    {
        Memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = RamBytes });
        _freeAtStart = Memory.FreeRamPages;
        Process = new Mm(Memory, "hmm-tests");
        _live.Add(Process);
    }

    public PhysicalMemory Memory { get; }

    public VirtualClock Clock { get; } = new();

    /// <summary>The test process.</summary>
    public Mm Process { get; }

    /// <summary>Whether a unit is one of the device-coherent ones (<c>hmm_is_coherent_type</c>).</summary>
    public static bool IsCoherent(int unit) => unit >= 2;

    /// <summary>The dmirror device of a unit, created on first use.</summary>
    public DmirrorDevice Driver(int unit)
    {
        if (_drivers[unit] is { } driver)
        {
            return driver;
        }

        var options = new SimGpuOptions
        {
            MemoryType = IsCoherent(unit) ? MemoryType.DeviceCoherent : MemoryType.DevicePrivate,
            MemoryBytes = DeviceMemoryBytes,
        };
        var gpu = new SimulatedGpu(Memory, $"hmm_dmirror{unit}", options, Clock);
        _gpus[unit] = gpu;
        driver = new DmirrorDevice(gpu);
        _drivers[unit] = driver;
        return driver;
    }

    /// <summary><c>open("/dev/hmm_dmirrorN")</c> from <paramref name="mm"/> (the test process by default).</summary>
    public Dmirror Open(int unit, Mm? mm = null)
    {
        Dmirror fd = Driver(unit).Open(mm ?? Process);
        _open.Add(fd);
        return fd;
    }

    /// <summary><c>close(fd)</c>: releases the file, which evicts all of its device's memory.</summary>
    public void Close(Dmirror fd)
    {
        _open.Remove(fd);
        fd.Dispose();
    }

    /// <summary><c>fork()</c> of <paramref name="parent"/>.</summary>
    public Mm Fork(Mm parent)
    {
        Mm child = parent.Fork("hmm-tests-child");
        _live.Add(child);
        return child;
    }

    /// <summary>The child's <c>_exit</c>, or its death by a signal: its address space goes.</summary>
    public void Exit(Mm mm)
    {
        _live.Remove(mm);
        mm.Exit();
    }

    /// <summary><c>hmm_create_file</c>: an unlinked temporary file of <paramref name="size"/> bytes.</summary>
    public SimFile CreateFile(ulong size)
    {
        var file = new SimFile(Memory, $"tmpfile{_files.Count}", size);
        _files.Add(file);
        return file;
    }

    /// <summary>
    /// Maps a buffer the way the selftests do: <c>mmap(NULL, size, prot, flags, -1 or file, 0)</c>, with
    /// <see cref="HmmBuffer.Base"/> and <see cref="HmmBuffer.Ptr"/> at the new mapping.
    /// </summary>
    public HmmBuffer Map(ulong size, int mirrorBytes, Protection protection, MapFlags flags, SimFile? file = null)
    {
        var buffer = new HmmBuffer(size, mirrorBytes);
        buffer.Base = Process.Mmap(0, size, protection, flags, file);
        buffer.Ptr = buffer.Base;
        return buffer;
    }

    /// <summary><c>hmm_buffer_free</c>: unmaps the buffer's whole mapping.</summary>
    public void Free(HmmBuffer buffer) => Process.Munmap(buffer.Base, buffer.Size);

    public async ValueTask DisposeAsync()
    {
        foreach (Dmirror fd in _open.ToArray())
        {
            Close(fd);
        }

        // The release of a file evicts every chunk of its device, so device memory is empty while the processes live.
        for (int unit = 0; unit < Units; unit++)
        {
            if (_gpus[unit] is { } gpu)
            {
                gpu.LocalMemory.FreePages.Should().Be(gpu.LocalMemory.CapacityPages, $"closing the files of hmm_dmirror{unit} brought every device page back to RAM");
            }
        }

        foreach (Mm mm in _live.ToArray())
        {
            Exit(mm);
        }

        for (int unit = 0; unit < Units; unit++)
        {
            if (_gpus[unit] is { } gpu)
            {
                await gpu.Device.UnbindAsync();
            }
        }

        ulong cached = 0;
        foreach (SimFile file in _files)
        {
            cached += (ulong)file.CachedPages;
        }

        Memory.FreeRamPages.Should().Be(_freeAtStart - cached, "no RAM page may leak: only the files' page caches stay");
    }
}
