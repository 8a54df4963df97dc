using BenchmarkDotNet.Attributes;

namespace Hmm.Benchmarks;

/// <summary>
/// <c>hmm_range_fault</c> (<see cref="HmmRange.Fault"/>) over one aligned 2 MiB range of private anonymous memory
/// (512 pages), as a driver calls it: <see cref="MmuIntervalNotifier.ReadBegin"/>, the mmap lock shared, then
/// <see cref="HmmRange.Fault"/>, all inside the measurement. <see cref="SnapshotPopulatedRange"/> asks for
/// <see cref="HmmPfn.RequestFault"/> on a range whose 512 pages were written in setup, so nothing faults and the
/// call is a pure page-table snapshot; <see cref="FaultWriteUntouchedRange"/> asks for
/// <see cref="HmmPfn.RequestFault"/> | <see cref="HmmPfn.RequestWrite"/> on an untouched range, so every page takes
/// the anonymous write fault and the range is walked twice. The baseline is the snapshot's floor: a plain loop
/// over 512 <c>ulong</c>s that reads each entry, ORs in a flag and writes it back.
/// </summary>
/// <remarks>
/// <para>Figures are per call, that is per 2 MiB range (per 512-entry loop for the baseline). The untouched range is
/// reset before every iteration with <c>madvise(MADV_DONTNEED)</c> in <see cref="ResetUntouchedRange"/>, outside
/// the measurement, so every iteration is a single invocation (<c>[InvocationCount(1)]</c> on the class, so that all
/// three share one job and BenchmarkDotNet computes the ratios).</para>
/// <para>A single snapshot or baseline loop is too short to time alone, so each of their invocations runs
/// <see cref="Batch"/> calls; the Allocated column is per call, so even one byte per snapshot shows there.
/// <see cref="FaultWriteUntouchedRange"/> shows one allocation per call: the PTE table (about 4.1 KiB) that the reset
/// frees and the first fault allocates again (<c>pte_alloc</c>).</para>
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("HmmRangeFault")]
[InvocationCount(1, 1)]
public class HmmRangeFaultBenchmarks
{
    private const int Pages = 512;
    private const int Batch = 8192;
    private const ulong RangeBytes = (ulong)Pages * PageSize.Bytes;

    private Mm _mm = null!;
    private ulong _populated;
    private ulong _untouched;
    private MmuIntervalNotifier _populatedNotifier = null!;
    private MmuIntervalNotifier _untouchedNotifier = null!;
    private ulong[] _populatedPfns = null!;
    private ulong[] _untouchedPfns = null!;
    private ulong[] _entries = null!;

    [GlobalSetup]
    public void Setup()
    {
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20, StorePageData = true });
        _mm = new Mm(memory, "bench-hmm-range");
        _populated = _mm.Mmap(0, RangeBytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        _untouched = _mm.Mmap(0, RangeBytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);

        var ops = new SetSequenceOps();
        _populatedNotifier = MmuIntervalNotifier.Insert(_mm, _populated, RangeBytes, ops);
        _untouchedNotifier = MmuIntervalNotifier.Insert(_mm, _untouched, RangeBytes, ops);

        byte[] value = [0x5A];
        for (int i = 0; i < Pages; i++)
        {
            _mm.Write(_populated + ((ulong)i * PageSize.Bytes), value);
        }

        _populatedPfns = new ulong[Pages];
        _untouchedPfns = new ulong[Pages];

        // The baseline's entries hold frame numbers of the same size as the snapshot's.
        _entries = new ulong[Pages];
        for (int i = 0; i < Pages; i++)
        {
            _entries[i] = _mm.ReadPte(_populated + ((ulong)i * PageSize.Bytes)).Pfn.Value;
        }

        // The measurement means something only if the populated range is already valid and writable and the
        // other one faults.
        if ((_populated & (RangeBytes - 1)) != 0 || (_untouched & (RangeBytes - 1)) != 0
            || SnapshotPopulatedRangeOnce() != Errno.None
            || Array.Exists(_populatedPfns, static p => (p & HmmPfn.Write) == 0)
            || !_mm.ReadPte(_untouched).IsNone)
        {
            throw new InvalidOperationException("The benchmark ranges are not laid out as the benchmark assumes.");
        }
    }

    [IterationSetup(Target = nameof(FaultWriteUntouchedRange))]
    public void ResetUntouchedRange() => _mm.Madvise(_untouched, RangeBytes, Advice.DontNeed);

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public ulong PlainLoop512Entries()
    {
        ulong[] entries = _entries;
        for (int call = 0; call < Batch; call++)
        {
            for (int i = 0; i < entries.Length; i++)
            {
                entries[i] = entries[i] | HmmPfn.Valid;
            }
        }

        return entries[^1];
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public Errno SnapshotPopulatedRange()
    {
        Errno result = Errno.None;
        for (int call = 0; call < Batch && result == Errno.None; call++)
        {
            result = SnapshotPopulatedRangeOnce();
        }

        return result;
    }

    [Benchmark]
    public Errno FaultWriteUntouchedRange()
    {
        var range = new HmmRange
        {
            Notifier = _untouchedNotifier,
            Start = _untouched,
            End = _untouched + RangeBytes,
            HmmPfns = _untouchedPfns,
            DefaultFlags = HmmPfn.RequestFault | HmmPfn.RequestWrite,
        };

        range.NotifierSequence = _untouchedNotifier.ReadBegin();
        using (_mm.MmapReadLock())
        {
            return range.Fault();
        }
    }

    private Errno SnapshotPopulatedRangeOnce()
    {
        var range = new HmmRange
        {
            Notifier = _populatedNotifier,
            Start = _populated,
            End = _populated + RangeBytes,
            HmmPfns = _populatedPfns,
            DefaultFlags = HmmPfn.RequestFault,
        };

        range.NotifierSequence = _populatedNotifier.ReadBegin();
        using (_mm.MmapReadLock())
        {
            return range.Fault();
        }
    }

    /// <summary>A driver whose device keeps no mappings: an invalidation only records the sequence.</summary>
    private sealed class SetSequenceOps : IMmuIntervalNotifierOps
    {
        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            subscription.SetSequence(currentSequence);
            return true;
        }
    }
}
