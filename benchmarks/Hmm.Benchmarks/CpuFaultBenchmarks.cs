using BenchmarkDotNet.Attributes;

namespace Hmm.Benchmarks;

/// <summary>
/// A CPU write to private anonymous memory, one byte per page through <see cref="Mm.Write"/>:
/// <see cref="WriteAnonymousFault"/> writes to <see cref="Pages"/> untouched pages, so every write takes the
/// anonymous-fault path of <see cref="Mm.HandleMmFault"/> (allocate a page, zero it, install a writable entry);
/// the baseline <see cref="WritePrefaultedPage"/> writes to <see cref="Pages"/> pages faulted in during setup, so
/// the ratio is the cost of the fault over an access that needs none.
/// </summary>
/// <remarks>
/// <para>Figures are per page (<c>OperationsPerInvoke = Pages</c>). The faulting range (8 aligned 2 MiB regions)
/// is made untouched again before every iteration with <c>madvise(MADV_DONTNEED)</c> in
/// <see cref="ResetFaultRange"/>, outside the measurement, so every iteration is a single invocation; the
/// baseline runs the same way (<c>[InvocationCount(1)]</c> on the class) so that both share one job and
/// BenchmarkDotNet computes the ratio.</para>
/// <para>DONTNEED over a whole 2 MiB region also frees its now empty PTE table, so the first write to each region
/// allocates it again (<c>pte_alloc</c>, about 4.1 KiB): that is the managed allocation the fault path makes,
/// about 8 bytes per page spread over the region. The pages themselves come from the simulator's page
/// allocator, which allocates nothing. <see cref="Pages"/> spans 8 regions rather than 1 so that the per-page
/// figure averages over several regions' table allocations.</para>
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("CpuFault")]
[InvocationCount(1, 1)]
public class CpuFaultBenchmarks
{
    private const int Pages = 4096;
    private const ulong RangeBytes = (ulong)Pages * PageSize.Bytes;

    private Mm _mm = null!;
    private ulong _faultRange;
    private ulong _prefaultedRange;
    private byte[] _value = null!;

    [GlobalSetup]
    public void Setup()
    {
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 128UL << 20, StorePageData = true });
        _mm = new Mm(memory, "bench-cpu-fault");
        _faultRange = _mm.Mmap(0, RangeBytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        _prefaultedRange = _mm.Mmap(0, RangeBytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        _value = [0x5A];

        for (int i = 0; i < Pages; i++)
        {
            _mm.Write(_prefaultedRange + ((ulong)i * PageSize.Bytes), _value);
        }

        // The measurement means something only if every write below faults and every baseline write does not.
        if ((_faultRange & ((2UL << 20) - 1)) != 0
            || !_mm.ReadPte(_faultRange).IsNone
            || !_mm.ReadPte(_prefaultedRange + RangeBytes - 1).IsWritable)
        {
            throw new InvalidOperationException("The benchmark ranges are not laid out as the benchmark assumes.");
        }
    }

    [IterationSetup(Target = nameof(WriteAnonymousFault))]
    public void ResetFaultRange() => _mm.Madvise(_faultRange, RangeBytes, Advice.DontNeed);

    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public ulong WritePrefaultedPage()
    {
        ulong address = _prefaultedRange;
        for (int i = 0; i < Pages; i++, address += PageSize.Bytes)
        {
            _mm.Write(address, _value);
        }

        return address;
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong WriteAnonymousFault()
    {
        ulong address = _faultRange;
        for (int i = 0; i < Pages; i++, address += PageSize.Bytes)
        {
            _mm.Write(address, _value);
        }

        return address;
    }
}
