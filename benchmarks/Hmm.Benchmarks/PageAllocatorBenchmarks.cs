using BenchmarkDotNet.Attributes;

namespace Hmm.Benchmarks;

/// <summary>
/// The System RAM page allocator: <see cref="PhysicalMemory.AllocatePage"/> then <see cref="PhysicalMemory.PutPage"/>
/// (the put that reaches zero frees the page). After the first round trip the page comes from and returns to the
/// allocator's LIFO free stack, so the baseline is a pop and push on a plain stack array of the same size.
/// </summary>
/// <remarks>
/// A lone pop and push costs less than BenchmarkDotNet can tell apart from an empty method, which would make every
/// ratio noise; so each invocation runs <see cref="Batch"/> round trips and the figures are per round trip.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("PageAllocator")]
public class PageAllocatorBenchmarks
{
    private const int Batch = 16;

    private PhysicalMemory _memory = null!;
    private ulong[] _stack = null!;
    private int _stackCount;

    [GlobalSetup]
    public void Setup()
    {
        _memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20, StorePageData = false });

        // Put one page on the free stack so every measured allocation takes the free-stack path, not the watermark.
        _memory.PutPage(_memory.AllocatePage());

        _stack = new ulong[(int)_memory.RamPages];
        _stack[0] = 1;
        _stackCount = 1;
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public ulong StackArrayPopPush()
    {
        ulong last = 0;
        for (int i = 0; i < Batch; i++)
        {
            last = _stack[--_stackCount];
            _stack[_stackCount++] = last;
        }

        return last;
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public ulong AllocateAndFreePage()
    {
        Pfn pfn = default;
        for (int i = 0; i < Batch; i++)
        {
            pfn = _memory.AllocatePage();
            _memory.PutPage(pfn);
        }

        return pfn.Value;
    }
}
