using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;

namespace Hmm.Benchmarks;

/// <summary>
/// Device migration with real data, on a warmed 2 MiB device-private pagemap and a 512-page anonymous area:
/// <see cref="MigrateVmaRoundTrip512Pages"/> moves the area to the device and back with migrate_vma
/// (<see cref="Migrate.VmaSetup"/>, driver copy, <see cref="Migrate.VmaPages"/>, <see cref="Migrate.VmaFinalize"/>,
/// twice), against <see cref="CopyTwoMiBThereAndBack"/>, the same 2 x 2 MiB of <see cref="Span{T}.CopyTo"/>; and
/// <see cref="CpuFaultOnADevicePrivatePage"/> moves one page to the device and lets a CPU read fault it back through
/// the driver's <c>migrate_to_ram</c>, against <see cref="CopyOnePageThereAndBack"/>.
/// <see cref="MigrateVmaThenEvictByPfn512Pages"/> moves the area to the device with migrate_vma and back by PFN
/// (<see cref="Migrate.DeviceRange"/>, <see cref="Migrate.DevicePages"/>, <see cref="Migrate.DeviceFinalize"/>), as a
/// driver evicts before unbinding; the device range is exactly the area's 512 pages.
/// </summary>
/// <remarks>
/// Each category has its own baseline; figures are per invocation (one round trip). With <see cref="Trace"/> the
/// machine's trace emitter writes every event (docs/trace-format.md) to <see cref="Stream.Null"/>: the overhead of
/// tracing is the ratio of a method's mean with <c>Trace=True</c> to its mean with <c>Trace=False</c>.
/// </remarks>
[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
public class MigrationBenchmarks
{
    private const int Pages = 512;
    private const ulong Bytes = (ulong)Pages * PageSize.Bytes;

    private PhysicalMemory _memory = null!;
    private BenchDriver _driver = null!;
    private Mm _mm = null!;
    private ulong _area;
    private ulong _faultPage;
    private ulong[] _src = null!;
    private ulong[] _dst = null!;
    private byte[] _from = null!;
    private byte[] _to = null!;
    private byte[] _oneByte = null!;
    private TraceWriter? _trace;

    /// <summary>Whether the machine's layers trace every event (into <see cref="Stream.Null"/>).</summary>
    [Params(false, true)]
    public bool Trace { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20, StorePageData = true });
        if (Trace)
        {
            _trace = TraceWriter.Create(Stream.Null);
            _memory.Trace.Attach(_trace);
        }

        _driver = new BenchDriver(_memory);
        _mm = new Mm(_memory, "bench-migration");
        _area = _mm.Mmap(0, Bytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        _faultPage = _mm.Mmap(0, PageSize.Bytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        var data = new byte[Bytes];
        new Random(42).NextBytes(data);
        _mm.Write(_area, data);
        _mm.Write(_faultPage, data.AsSpan(0, PageSize.Bytes));
        _src = new ulong[Pages];
        _dst = new ulong[Pages];
        _from = data;
        _to = new byte[Bytes];
        _oneByte = new byte[1];

        // Warm: one round trip touches every device page, page-data block and page table once.
        MigrateVmaRoundTrip512Pages();
        MigrateVmaThenEvictByPfn512Pages();
        CpuFaultOnADevicePrivatePage();
        if (_mm.ReadPte(_area).Kind != PteKind.Present || _driver.FreePages != (int)_driver.Pagemap.PageCount)
        {
            throw new InvalidOperationException("The round trip did not bring every page back.");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _memory.Trace.Detach();
        _trace?.Dispose();
    }

    [Benchmark(Baseline = true)]
    [BenchmarkCategory("RoundTrip512")]
    public int CopyTwoMiBThereAndBack()
    {
        _from.AsSpan().CopyTo(_to);
        _to.AsSpan().CopyTo(_from);
        return _to[17];
    }

    [Benchmark]
    [BenchmarkCategory("RoundTrip512")]
    public int MigrateVmaRoundTrip512Pages()
    {
        using MmapLockGuard guard = _mm.MmapReadLock();
        int moved = Move(MigrateVmaSelect.System, toDevice: true);
        return moved + Move(MigrateVmaSelect.DevicePrivate, toDevice: false);
    }

    [Benchmark]
    [BenchmarkCategory("RoundTrip512")]
    public int MigrateVmaThenEvictByPfn512Pages()
    {
        using (_mm.MmapReadLock())
        {
            Move(MigrateVmaSelect.System, toDevice: true);
        }

        Migrate.DeviceRange(_memory, _src, _driver.Pagemap.Ranges[0].StartPfn);
        _driver.AllocateAndCopy(_src, _dst, toDevice: false);
        Migrate.DevicePages(_memory, _src, _dst);
        Migrate.DeviceFinalize(_memory, _src, _dst);
        return _src.Length;
    }

    [Benchmark(Baseline = true)]
    [BenchmarkCategory("CpuFault")]
    public int CopyOnePageThereAndBack()
    {
        _from.AsSpan(0, PageSize.Bytes).CopyTo(_to);
        _to.AsSpan(0, PageSize.Bytes).CopyTo(_from);
        return _to[17];
    }

    [Benchmark]
    [BenchmarkCategory("CpuFault")]
    public int CpuFaultOnADevicePrivatePage()
    {
        using (_mm.MmapReadLock())
        {
            MoveOne(_faultPage);
        }

        _mm.Read(_faultPage, _oneByte);
        return _oneByte[0];
    }

    private int Move(MigrateVmaSelect select, bool toDevice)
    {
        var args = new MigrateVma
        {
            Vma = _mm.FindVma(_area),
            Start = _area,
            End = _area + Bytes,
            Src = _src,
            Dst = _dst,
            PgmapOwner = _driver.Owner,
            Flags = select,
        };
        Migrate.VmaSetup(ref args);
        _driver.AllocateAndCopy(_src, _dst, toDevice);
        Migrate.VmaPages(ref args);
        Migrate.VmaFinalize(ref args);
        return (int)args.CPages;
    }

    private void MoveOne(ulong address)
    {
        var args = new MigrateVma
        {
            Vma = _mm.FindVma(address),
            Start = address,
            End = address + PageSize.Bytes,
            Src = _src.AsSpan(0, 1),
            Dst = _dst.AsSpan(0, 1),
            PgmapOwner = _driver.Owner,
            Flags = MigrateVmaSelect.System,
        };
        Migrate.VmaSetup(ref args);
        _driver.AllocateAndCopy(_src.AsSpan(0, 1), _dst.AsSpan(0, 1), toDevice: true);
        Migrate.VmaPages(ref args);
        Migrate.VmaFinalize(ref args);
    }

    /// <summary>A device-private driver with an array free list: allocates nothing per page.</summary>
    private sealed class BenchDriver : IDevPagemapOps
    {
        private readonly Lock _lock = new();
        private readonly Pfn[] _free;
        private readonly PhysicalMemory _memory;
        private int _count;

        public BenchDriver(PhysicalMemory memory)
        {
            _memory = memory;
            PhysicalRange range = memory.RequestFreeRegion(2UL << 20, "bench-gpu");
            Pagemap = Memremap.Map(memory, new DevPagemapOptions
            {
                Type = MemoryType.DevicePrivate,
                Ranges = [range],
                Owner = Owner,
                Ops = this,
                Name = "bench-gpu",
            });
            _free = new Pfn[(int)Pagemap.PageCount];
            for (ulong i = Pagemap.PageCount; i-- > 0;)
            {
                _free[_count++] = range.StartPfn + i;
            }
        }

        public object Owner { get; } = new();

        public DevPagemap Pagemap { get; }

        public int FreePages => _count;

        public void AllocateAndCopy(Span<ulong> src, Span<ulong> dst, bool toDevice)
        {
            for (int i = 0; i < src.Length; i++)
            {
                if (!MigratePfn.IsMigrating(src[i]))
                {
                    continue;
                }

                Pfn page;
                if (toDevice)
                {
                    lock (_lock)
                    {
                        page = _free[--_count];
                    }

                    Pagemap.InitDevicePage(page);
                }
                else
                {
                    page = _memory.AllocatePage();
                    _memory.LockPage(page);
                }

                if (MigratePfn.TryGetPage(src[i], out Pfn source))
                {
                    _memory.PageData(source).CopyTo(_memory.PageData(page));
                }
                else
                {
                    _memory.PageData(page).Clear();
                }

                dst[i] = MigratePfn.FromPfn(page);
            }
        }

        public void PageFree(DevPagemap pagemap, Pfn pfn)
        {
            lock (_lock)
            {
                _free[_count++] = pfn;
            }
        }

        public VmFaultResult MigrateToRam(in DevicePrivateFault fault)
        {
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
            AllocateAndCopy(src, dst, toDevice: false);
            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
            return VmFaultResult.None;
        }
    }
}
