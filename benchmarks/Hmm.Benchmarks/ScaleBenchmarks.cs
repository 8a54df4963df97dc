using BenchmarkDotNet.Attributes;

namespace Hmm.Benchmarks;

/// <summary>
/// The five page operations of the metadata-only scale run (hmmsim's stream over 16 GiB at 150% oversubscription),
/// each over <see cref="Pages"/> pages (64 MiB) of a private anonymous area with one interval notifier over it, as a
/// mirroring driver registers: <see cref="CpuWriteFault"/> (first-touch write through <see cref="Mm.HandleMmFault"/>),
/// <see cref="MigrateVmaToDevice"/> (System RAM pages to device-private pages with migrate_vma in 512-page chunks,
/// <see cref="DevPagemap.InitDevicePage"/> per destination), <see cref="MigrateVmaHolesToDevice"/> (the same over pages
/// never touched, so <see cref="Migrate.VmaPages"/> inserts them), <see cref="EvictByPfn"/> (device pages back to RAM by
/// PFN, <see cref="Migrate.DevicePfns"/> in 512-page chunks, their mappings found through the reverse map) and
/// <see cref="CpuReadFaultMigrateToRam"/> (a CPU read fault per device page, each migrated back alone by the driver's
/// <c>migrate_to_ram</c>).
/// </summary>
/// <remarks>
/// Figures are per page (<c>OperationsPerInvoke = Pages</c>). The memory stores no page data
/// (<see cref="PhysicalMemoryOptions.StorePageData"/> false), so nothing is copied: what is measured is the core's
/// own per-page cost. Each iteration is one invocation (<c>[InvocationCount(1)]</c>) after an
/// <c>[IterationSetup]</c> that puts the area in the state the operation starts from (untouched, in RAM, or on the
/// device), outside the measurement.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Scale")]
[InvocationCount(1, 1)]
public class ScaleBenchmarks
{
    private const int Pages = 16_384;
    private const int Chunk = 512;
    private const ulong Bytes = (ulong)Pages * PageSize.Bytes;

    private PhysicalMemory _memory = null!;
    private ScaleDriver _driver = null!;
    private Mm _mm = null!;
    private ulong _area;
    private ulong _holes;
    private ulong[] _src = null!;
    private ulong[] _dst = null!;
    private Pfn[] _devicePages = null!;

    [GlobalSetup]
    public void Setup()
    {
        _memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 2 * Bytes + (16UL << 20), StorePageData = false });
        _driver = new ScaleDriver(_memory, 2 * Bytes);
        _mm = new Mm(_memory, "bench-scale");
        _area = _mm.Mmap(0, Bytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        _holes = _mm.Mmap(0, Bytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        MmuIntervalNotifier.Insert(_mm, _area, Bytes, _driver);
        MmuIntervalNotifier.Insert(_mm, _holes, Bytes, _driver);
        _src = new ulong[Chunk];
        _dst = new ulong[Chunk];
        _devicePages = new Pfn[Pages];

        // Each benchmark runs only a few invocations under the short job, too few for tiered compilation to reach the
        // optimised code a long run executes: the cycle runs here until it has (the pauses let the tiering thread work).
        for (int round = 0; round < 3; round++)
        {
            for (int cycle = 0; cycle < 10; cycle++)
            {
                ToDeviceState();
                EvictByPfn();
                ToDeviceState();
                CpuReadFaultMigrateToRam();
                MigrateVmaHolesToDevice();
            }

            Thread.Sleep(250);
        }

        // The measurement means something only if every step moves every page.
        _driver.MigrateToRamCalls = 0;
        ToDeviceState();
        EvictByPfn();
        if (_mm.ReadPte(_area + Bytes - PageSize.Bytes).Kind != PteKind.Present || _driver.FreePages != (int)_driver.Pagemap.PageCount)
        {
            throw new InvalidOperationException("Eviction did not bring every page back.");
        }

        ToDeviceState();
        CpuReadFaultMigrateToRam();
        MigrateVmaHolesToDevice();
        if (_driver.MigrateToRamCalls != Pages || _mm.ReadPte(_holes + Bytes - PageSize.Bytes).Kind != PteKind.DevicePrivate)
        {
            throw new InvalidOperationException("The CPU faults or the insertion of holes did not move every page.");
        }
    }

    [IterationSetup(Target = nameof(CpuWriteFault))]
    public void UntouchedState() => Reset();

    [IterationSetup(Targets = [nameof(MigrateVmaToDevice), nameof(MigrateVmaHolesToDevice)])]
    public void InRamState()
    {
        Reset();
        CpuWriteFault();
    }

    [IterationSetup(Targets = [nameof(EvictByPfn), nameof(CpuReadFaultMigrateToRam)])]
    public void ToDeviceState()
    {
        InRamState();
        MigrateVmaToDevice();
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong CpuWriteFault()
    {
        ulong address = _area;
        for (int chunk = 0; chunk < Pages / Chunk; chunk++)
        {
            using MmapLockGuard guard = _mm.MmapReadLock();
            Vma vma = _mm.FindVma(address)!;
            for (int i = 0; i < Chunk; i++, address += PageSize.Bytes)
            {
                if (_mm.HandleMmFault(vma, address, FaultFlags.Write) != VmFaultResult.None)
                {
                    throw new InvalidOperationException($"Write fault at 0x{address:x} failed.");
                }
            }
        }

        return address;
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong MigrateVmaToDevice() => MoveToDevice(_area, record: true);

    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong MigrateVmaHolesToDevice() => MoveToDevice(_holes, record: false);

    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong EvictByPfn()
    {
        for (int chunk = 0; chunk < Pages; chunk += Chunk)
        {
            for (int i = 0; i < Chunk; i++)
            {
                _src[i] = _devicePages[chunk + i].Value;
            }

            Migrate.DevicePfns(_memory, _src);
            for (int i = 0; i < Chunk; i++)
            {
                _dst[i] = 0;
                if (MigratePfn.IsMigrating(_src[i]))
                {
                    Pfn ram = _memory.AllocatePage();
                    _memory.LockPage(ram);
                    _dst[i] = MigratePfn.FromPfn(ram) | (_src[i] & MigratePfn.Write);
                }
            }

            Migrate.DevicePages(_memory, _src, _dst);
            Migrate.DeviceFinalize(_memory, _src, _dst);
        }

        return _area;
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong CpuReadFaultMigrateToRam()
    {
        ulong address = _area;
        for (int chunk = 0; chunk < Pages / Chunk; chunk++)
        {
            using MmapLockGuard guard = _mm.MmapReadLock();
            Vma vma = _mm.FindVma(address)!;
            for (int i = 0; i < Chunk; i++, address += PageSize.Bytes)
            {
                if (_mm.HandleMmFault(vma, address, FaultFlags.None) != VmFaultResult.None)
                {
                    throw new InvalidOperationException($"Read fault at 0x{address:x} failed.");
                }
            }
        }

        return address;
    }

    private void Reset()
    {
        _mm.Madvise(_area, Bytes, Advice.DontNeed);
        _mm.Madvise(_holes, Bytes, Advice.DontNeed);
    }

    private ulong MoveToDevice(ulong start, bool record)
    {
        using MmapLockGuard guard = _mm.MmapReadLock();
        Vma vma = _mm.FindVma(start)!;
        for (int chunk = 0; chunk < Pages; chunk += Chunk)
        {
            ulong address = start + ((ulong)chunk * PageSize.Bytes);
            var args = new MigrateVma
            {
                Vma = vma,
                Start = address,
                End = address + (Chunk * PageSize.Bytes),
                Src = _src,
                Dst = _dst,
                PgmapOwner = _driver.Owner,
                Flags = MigrateVmaSelect.System,
            };
            Migrate.VmaSetup(ref args);
            for (int i = 0; i < Chunk; i++)
            {
                if (MigratePfn.IsMigrating(_src[i]))
                {
                    Pfn page = _driver.Allocate();
                    _dst[i] = MigratePfn.FromPfn(page);
                    if (record)
                    {
                        _devicePages[chunk + i] = page;
                    }
                }
            }

            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
        }

        return start;
    }

    /// <summary>
    /// A device-private driver with an array free list over one pagemap, and the mirror's interval notifier (which
    /// records the sequence under its lock, as every driver's must). Allocates nothing per page.
    /// </summary>
    private sealed class ScaleDriver : IDevPagemapOps, IMmuIntervalNotifierOps
    {
        private readonly Lock _lock = new();
        private readonly Pfn[] _free;
        private readonly PhysicalMemory _memory;
        private int _count;

        public ScaleDriver(PhysicalMemory memory, ulong bytes)
        {
            _memory = memory;
            PhysicalRange range = memory.RequestFreeRegion(bytes, "bench-scale-gpu");
            Pagemap = Memremap.Map(memory, new DevPagemapOptions
            {
                Type = MemoryType.DevicePrivate,
                Ranges = [range],
                Owner = Owner,
                Ops = this,
                Name = "bench-scale-gpu",
            });
            _free = new Pfn[(int)Pagemap.PageCount];
            for (ulong i = Pagemap.PageCount; i-- > 0;)
            {
                _free[_count++] = range.StartPfn + i;
            }
        }

        public object Owner { get; } = new();

        public DevPagemap Pagemap { get; }

        public int MigrateToRamCalls { get; set; }

        public int FreePages
        {
            get
            {
                lock (_lock)
                {
                    return _count;
                }
            }
        }

        public Pfn Allocate()
        {
            Pfn page;
            lock (_lock)
            {
                page = _free[--_count];
            }

            Pagemap.InitDevicePage(page);
            return page;
        }

        public void PageFree(DevPagemap pagemap, Pfn pfn)
        {
            lock (_lock)
            {
                _free[_count++] = pfn;
            }
        }

        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            lock (_lock)
            {
                subscription.SetSequence(currentSequence);
            }

            return true;
        }

        public VmFaultResult MigrateToRam(in DevicePrivateFault fault)
        {
            MigrateToRamCalls++;
            Span<ulong> src = stackalloc ulong[1];
            Span<ulong> dst = stackalloc ulong[1];
            var args = new MigrateVma
            {
                Vma = fault.Vma,
                Start = fault.Address,
                End = fault.Address + PageSize.Bytes,
                Src = src,
                Dst = dst,
                PgmapOwner = Owner,
                Flags = MigrateVmaSelect.DevicePrivate,
                FaultPage = fault.Page,
            };
            Migrate.VmaSetup(ref args);
            if (MigratePfn.IsMigrating(src[0]) && _memory.TryAllocatePage(out Pfn ram))
            {
                _memory.LockPage(ram);
                dst[0] = MigratePfn.FromPfn(ram) | (src[0] & MigratePfn.Write);
            }

            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
            return VmFaultResult.None;
        }
    }
}
