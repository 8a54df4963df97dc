using BenchmarkDotNet.Attributes;

namespace Hmm.Benchmarks;

/// <summary>
/// Device memory fast paths on a 2 MiB device-private pagemap registered once: the PFN-to-pagemap lookup
/// <see cref="DevPagemap.Get"/> + <see cref="DevPagemapReference.Dispose"/>, the owner read without a reference
/// <see cref="DevPagemap.OfPage"/>, and a device page's life as a driver
/// sees it, <see cref="DevPagemap.InitDevicePage"/> + <see cref="PhysicalMemory.UnlockPage"/> +
/// <see cref="PhysicalMemory.PutPage"/> (the last put calls the driver's page-free). The baseline is the
/// lookup's floor: reading an int from an array by index.
/// </summary>
/// <remarks>
/// A lone array read costs less than BenchmarkDotNet can tell apart from an empty method, which would make every
/// ratio noise; so each invocation runs <see cref="Batch"/> operations, on <see cref="Batch"/> consecutive pages
/// (array slots for the baseline), and the figures are per operation.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Pagemap")]
public class PagemapLookupBenchmarks
{
    private const int Batch = 16;
    private const ulong RangeBytes = 2UL << 20;

    private PhysicalMemory _memory = null!;
    private DevPagemap _pagemap = null!;
    private Pfn _firstPage;
    private int[] _pagemapIds = null!;

    [GlobalSetup]
    public void Setup()
    {
        _memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20, StorePageData = false });
        PhysicalRange range = _memory.RequestFreeRegion(RangeBytes, "bench-device");
        _pagemap = Memremap.Map(_memory, new DevPagemapOptions
        {
            Type = MemoryType.DevicePrivate,
            Ranges = [range],
            Owner = new object(),
            Ops = new NoOpDevPagemapOps(),
            Name = "bench-device",
        });

        // Pages in the middle of the range, so the lookup is not helped by sitting on a boundary.
        _firstPage = range.StartPfn + (range.PageCount / 2);

        _pagemapIds = new int[Batch];
        Array.Fill(_pagemapIds, _pagemap.Id);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public int ArrayIndexLookup()
    {
        int[] ids = _pagemapIds;
        int sum = 0;
        for (int i = 0; i < Batch; i++)
        {
            sum += ids[i];
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int GetAndPutDevPagemap()
    {
        int sum = 0;
        for (int i = 0; i < Batch; i++)
        {
            using DevPagemapReference lookup = DevPagemap.Get(_memory, _firstPage + (ulong)i);
            sum += lookup.Pagemap!.Id;
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int PagePgmap()
    {
        int sum = 0;
        for (int i = 0; i < Batch; i++)
        {
            sum += DevPagemap.OfPage(_memory, _firstPage + (ulong)i)!.Id;
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public ulong InitUnlockAndPutDevicePage()
    {
        Pfn page = default;
        for (int i = 0; i < Batch; i++)
        {
            page = _firstPage + (ulong)i;
            _pagemap.InitDevicePage(page);
            _memory.UnlockPage(page);
            _memory.PutPage(page);
        }

        return page.Value;
    }

    /// <summary>A driver that keeps no free list: page-free has nothing to do and no CPU fault ever reaches it.</summary>
    private sealed class NoOpDevPagemapOps : IDevPagemapOps
    {
        public void PageFree(DevPagemap pagemap, Pfn pfn)
        {
        }

        public VmFaultResult MigrateToRam(in DevicePrivateFault fault) => VmFaultResult.Sigbus;
    }
}
