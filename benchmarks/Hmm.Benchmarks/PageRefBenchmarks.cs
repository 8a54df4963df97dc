using BenchmarkDotNet.Attributes;

namespace Hmm.Benchmarks;

/// <summary>
/// Page references and the page lock on a RAM page the benchmark holds a reference to, so neither path ever
/// frees the page or waits: <see cref="PhysicalMemory.GetPage"/> + <see cref="PhysicalMemory.PutPage"/> and
/// <see cref="PhysicalMemory.TryLockPage"/> + <see cref="PhysicalMemory.UnlockPage"/>. The baseline is the bare
/// pair of atomics on a plain int field.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("PageRef")]
public class PageRefBenchmarks
{
    private PhysicalMemory _memory = null!;
    private Pfn _page;
    private int _count;

    [GlobalSetup]
    public void Setup()
    {
        _memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20, StorePageData = false });
        _page = _memory.AllocatePage();
        _count = 1;
    }

    [Benchmark(Baseline = true)]
    public int InterlockedIncrementDecrement()
    {
        Interlocked.Increment(ref _count);
        return Interlocked.Decrement(ref _count);
    }

    [Benchmark]
    public ulong GetAndPutPage()
    {
        _memory.GetPage(_page);
        _memory.PutPage(_page);
        return _page.Value;
    }

    [Benchmark]
    public bool TryLockAndUnlockPage()
    {
        bool locked = _memory.TryLockPage(_page);
        _memory.UnlockPage(_page);
        return locked;
    }
}
