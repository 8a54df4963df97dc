namespace Hmm.Cli.Tracing;

/// <summary>
/// A histogram of non-negative integers in bounded memory, for percentiles over millions of samples: values
/// below 256 are kept exactly, larger ones in buckets of their 8 most significant bits (the bucket's lower bound
/// is within 1% below the value). Count, sum, minimum and maximum are exact.
/// </summary>
internal sealed class LogHistogram
{
    private const int ExactBits = 8;

    // At most 64 shifts x 128 mantissas, so the dictionary stays small whatever is recorded.
    private readonly Dictionary<long, long> _buckets = [];

    public long Count { get; private set; }

    public long Sum { get; private set; }

    public long Min { get; private set; }

    public long Max { get; private set; }

    public double Mean => Count == 0 ? 0 : (double)Sum / Count;

    public void Record(long value)
    {
        long clamped = Math.Max(0, value);
        long key = BucketOf(clamped);
        _buckets[key] = _buckets.TryGetValue(key, out long count) ? count + 1 : 1;
        Min = Count == 0 ? clamped : Math.Min(Min, clamped);
        Max = Count == 0 ? clamped : Math.Max(Max, clamped);
        Count++;
        Sum += clamped;
    }

    /// <summary>The nearest-rank percentile: the smallest recorded bucket holding at least <paramref name="percent"/>% of the samples (the exact maximum for 100).</summary>
    public long Percentile(double percent)
    {
        if (Count == 0)
        {
            return 0;
        }

        if (percent >= 100)
        {
            return Max;
        }

        long rank = Math.Max(1, (long)Math.Ceiling(percent / 100 * Count));
        long seen = 0;
        foreach (long key in SortedKeys())
        {
            seen += _buckets[key];
            if (seen >= rank)
            {
                return Math.Max(key, Min);
            }
        }

        return Max;
    }

    /// <summary>Counts in power-of-two ranges [2^k, 2^(k+1)) (0 alone first), in increasing order, empty ranges left out.</summary>
    public IReadOnlyList<(long From, long To, long Count)> PowerOfTwoBuckets()
    {
        var ranges = new SortedDictionary<long, long>();
        foreach ((long key, long count) in _buckets)
        {
            long from = key == 0 ? 0 : 1L << (63 - (int)long.LeadingZeroCount(key));
            ranges[from] = ranges.TryGetValue(from, out long sum) ? sum + count : count;
        }

        var result = new List<(long, long, long)>(ranges.Count);
        foreach ((long from, long count) in ranges)
        {
            result.Add((from, from == 0 ? 0 : (from << 1) - 1, count));
        }

        return result;
    }

    private List<long> SortedKeys()
    {
        var keys = new List<long>(_buckets.Keys);
        keys.Sort();
        return keys;
    }

    private static long BucketOf(long value)
    {
        int bits = 64 - (int)long.LeadingZeroCount(value);
        if (bits <= ExactBits)
        {
            return value;
        }

        int shift = bits - ExactBits;
        return (value >> shift) << shift;
    }
}
