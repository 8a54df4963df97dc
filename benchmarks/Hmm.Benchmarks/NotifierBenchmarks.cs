using BenchmarkDotNet.Attributes;

namespace Hmm.Benchmarks;

/// <summary>
/// The invalidation of one page, as the address space brackets every page-table change:
/// <see cref="MmuNotifierSubscriptions.InvalidateRangeStart"/> +
/// <see cref="MmuNotifierSubscriptions.InvalidateRangeEnd"/> with <see cref="Subscriptions"/> interval notifiers
/// registered, one page each, of which exactly one (the middle one, so the lookup goes down the tree) overlaps the
/// invalidated page. Its callback records the sequence, as every driver's must. No classic notifier is registered.
/// </summary>
/// <remarks>
/// The baseline is the constant floor every invalidation pays whatever the number of subscriptions: start and end
/// each take the subscriptions' lock once, so it is two uncontended lock round trips on a private object. The
/// ratio is then what the interval-tree lookup, the callback and the sequence bookkeeping add on top. One
/// invalidation is long enough to time alone, so there is no batching.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("Notifier")]
public class NotifierBenchmarks
{
    private readonly object _lock = new();
    private MmuNotifierSubscriptions _subscriptions = null!;
    private MmuNotifierRange _range;
    private int _lockRoundTrips;

    /// <summary>How many interval notifiers are registered.</summary>
    [Params(1, 100, 10_000)]
    public int Subscriptions { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        const ulong Base = 1UL << 32;
        _subscriptions = new MmuNotifierSubscriptions();
        var ops = new SetSequenceOps();

        // One page each with a page of gap between them, inserted in a fixed shuffled order (seed 42) so the tree
        // is built the way a driver's random registrations would build it.
        int[] order = new int[Subscriptions];
        for (int i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        new Random(42).Shuffle(order);
        MmuIntervalNotifier[] notifiers = new MmuIntervalNotifier[Subscriptions];
        foreach (int i in order)
        {
            notifiers[i] = _subscriptions.Insert(Base + ((ulong)i * 2 * PageSize.Bytes), PageSize.Bytes, ops);
        }

        MmuIntervalNotifier target = notifiers[Subscriptions / 2];
        _range = new MmuNotifierRange(target.Start, target.End, MmuNotifierEvent.Clear);

        // The measurement means something only if the invalidation hits its subscription and no other.
        ulong[] sequences = Array.ConvertAll(notifiers, static n => n.ReadBegin());
        InvalidateOnePage();
        for (int i = 0; i < notifiers.Length; i++)
        {
            if (notifiers[i].ReadRetry(sequences[i]) != ReferenceEquals(notifiers[i], target))
            {
                throw new InvalidOperationException("The invalidated page does not overlap exactly one subscription.");
            }
        }
    }

    [Benchmark(Baseline = true)]
    public int TwoLockRoundTrips()
    {
        lock (_lock)
        {
            _lockRoundTrips++;
        }

        lock (_lock)
        {
            return _lockRoundTrips;
        }
    }

    [Benchmark]
    public bool InvalidateOnePage()
    {
        bool started = _subscriptions.InvalidateRangeStart(_range);
        _subscriptions.InvalidateRangeEnd(_range);
        return started;
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
