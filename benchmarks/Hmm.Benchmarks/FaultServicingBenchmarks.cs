using BenchmarkDotNet.Attributes;
using Hmm.Devices;
using Hmm.Drivers;
using Hmm.SimGpu;

namespace Hmm.Benchmarks;

/// <summary>
/// The fault-servicing driver end to end, per device fault: <see cref="ServiceABatchOf256Faults"/> lets a simulated GPU
/// fault on 256 pages that the CPU filled (one fault per page, engine = page), then
/// <see cref="FaultServicingDriver.ServiceNextBatch"/> fetches the batch, groups it by 2 MiB block, migrates the 256
/// pages to the device (first touch, with real data), maps them and replays. The area is twice the device memory and
/// is walked cyclically, so in the steady state every batch also evicts, on average, 256 least recently used pages
/// back to RAM by PFN. <see cref="MigrateVmaAndEvictByPfn256Pages"/> is the baseline: the same core work with no fault
/// path (no fault records, batch, sort, block metadata, policy, device page table or replay): migrate_vma of 256
/// pages into device pages through the copy engine, then the 256 pages of a second GPU's memory back by PFN.
/// </summary>
/// <remarks>
/// Figures are per fault (256 operations per invocation); once warm neither allocates. With <see cref="Trace"/> the
/// machine's trace emitter writes every event (docs/trace-format.md) to <see cref="Stream.Null"/>: the overhead of
/// tracing is the ratio of a method's mean with <c>Trace=True</c> to its mean with <c>Trace=False</c>.
/// </remarks>
[MemoryDiagnoser]
public class FaultServicingBenchmarks
{
    private const int Batch = 256;
    private const ulong DeviceBytes = 4UL << 20;
    private const ulong AreaBytes = 2 * DeviceBytes;
    private const ulong AreaPages = AreaBytes / PageSize.Bytes;

    private PhysicalMemory _memory = null!;
    private SimulatedGpu _gpu = null!;
    private FaultServicingDriver _driver = null!;
    private GpuVaSpace _space = null!;
    private Mm _mm = null!;
    private ulong _area;
    private ulong _next;

    private SimulatedGpu _plainGpu = null!;
    private Mm _plainMm = null!;
    private ulong _plainArea;
    private ulong[] _src = null!;
    private ulong[] _dst = null!;
    private Pfn[] _devicePages = null!;
    private Pfn[] _ramPages = null!;
    private TraceWriter? _trace;

    /// <summary>Whether the machine's layers trace every event (into <see cref="Stream.Null"/>).</summary>
    [Params(false, true)]
    public bool Trace { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 96UL << 20, StorePageData = true });
        if (Trace)
        {
            _trace = TraceWriter.Create(Stream.Null);
            _memory.Trace.Attach(_trace);
        }

        _gpu = new SimulatedGpu(_memory, "bench-gpu", new SimGpuOptions { MemoryBytes = (long)DeviceBytes, FaultBatchSize = Batch });
        _driver = new FaultServicingDriver(_gpu);
        _mm = new Mm(_memory, "bench-faults");
        _space = _driver.Attach(_mm);
        _area = MapFilled(_mm, AreaBytes);

        _plainGpu = new SimulatedGpu(_memory, "bench-plain", new SimGpuOptions { MemoryBytes = 2L << 20 });
        _plainMm = new Mm(_memory, "bench-plain");
        _plainArea = MapFilled(_plainMm, (ulong)Batch * PageSize.Bytes);
        _src = new ulong[Batch];
        _dst = new ulong[Batch];
        _devicePages = new Pfn[Batch];
        _ramPages = new Pfn[Batch];

        // Warm: two cycles over the area fill the device, evict, and size every pool and table.
        for (ulong i = 0; i < 2 * AreaPages / Batch; i++)
        {
            ServiceABatchOf256Faults();
            MigrateVmaAndEvictByPfn256Pages();
        }

        if (_driver.Statistics.BlocksEvicted == 0 || _driver.Statistics.FaultsUnserviceable != 0)
        {
            throw new InvalidOperationException("The warm-up did not reach the steady state of migration and eviction.");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _space.Dispose();
        _mm.Exit();
        _plainMm.Exit();
        _gpu.Device.Unbind(TimeSpan.FromSeconds(10));
        _plainGpu.Device.Unbind(TimeSpan.FromSeconds(10));
        _memory.Trace.Detach();
        _trace?.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int ServiceABatchOf256Faults()
    {
        ulong first = _area + (_next * PageSize.Bytes);
        for (int i = 0; i < Batch; i++)
        {
            _gpu.Access(_space.Space, first + ((ulong)i * PageSize.Bytes), PageSize.Bytes, DeviceAccessKind.Read, default, i, replayable: true);
        }

        _next = (_next + Batch) % AreaPages;
        return _driver.ServiceNextBatch().PagesMigrated;
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public int MigrateVmaAndEvictByPfn256Pages()
    {
        int moved;
        using (_plainMm.MmapReadLock())
        {
            var args = new MigrateVma
            {
                Vma = _plainMm.FindVma(_plainArea),
                Start = _plainArea,
                End = _plainArea + ((ulong)Batch * PageSize.Bytes),
                Src = _src,
                Dst = _dst,
                PgmapOwner = _plainGpu.LocalMemory.Owner,
                Flags = MigrateVmaSelect.System,
            };
            Migrate.VmaSetup(ref args);
            _plainGpu.LocalMemory.Allocate(_devicePages);
            for (int i = 0; i < Batch; i++)
            {
                MigratePfn.TryGetPage(_src[i], out _ramPages[i]);
                _dst[i] = MigratePfn.FromPfn(_devicePages[i]) | MigratePfn.Write;
            }

            _plainGpu.CopyEngine.Copy(_ramPages, _devicePages, out CopyCompletion there);
            _plainGpu.Clock.AdvanceTo(there.End);
            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
            moved = (int)args.CPages;
        }

        for (int i = 0; i < Batch; i++)
        {
            _src[i] = _devicePages[i].Value;
        }

        Migrate.DevicePfns(_memory, _src);
        for (int i = 0; i < Batch; i++)
        {
            _ramPages[i] = _memory.AllocatePage();
            _memory.LockPage(_ramPages[i]);
            _dst[i] = MigratePfn.FromPfn(_ramPages[i]) | MigratePfn.Write;
        }

        _plainGpu.CopyEngine.Copy(_devicePages, _ramPages, out CopyCompletion back);
        _plainGpu.Clock.AdvanceTo(back.End);
        Migrate.DevicePages(_memory, _src, _dst);
        Migrate.DeviceFinalize(_memory, _src, _dst);
        return moved;
    }

    private static ulong MapFilled(Mm mm, ulong bytes)
    {
        ulong area = mm.Mmap(0, bytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        var data = new byte[bytes];
        new Random(42).NextBytes(data);
        mm.Write(area, data);
        return area;
    }
}
