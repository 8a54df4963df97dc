using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// Fault injection for tests: makes the next device allocations or copies fail, or delays the next copies. Each
/// call replaces what the same kind of injection still had pending.
/// </summary>
/// <remarks>
/// <para>Error model: a negative count or delay gives <see cref="HmmException"/> EINVAL and changes nothing. An
/// injected allocation failure makes <see cref="IDeviceMemory.Allocate"/> return 0 pages; an injected copy failure
/// makes <see cref="ICopyEngine.Copy"/> return EIO with nothing copied and nothing charged; a delay adds to the
/// copy's completion time.</para>
/// <para>Concurrency model: thread-safe; each pending injection is consumed by exactly one call.</para>
/// </remarks>
public sealed class SimGpuFaultInjection
{
    // Guards the pair (_delayCount, _delay) so that a consumer never sees one without the other.
    private readonly Lock _delayLock = new();
    private int _failAllocations;
    private int _failCopies;
    private int _delayCount;
    private long _delay;

    internal SimGpuFaultInjection()
    {
    }

    /// <summary>Makes the next <paramref name="count"/> calls of <see cref="IDeviceMemory.Allocate"/> (that ask for at least one page) return 0 pages.</summary>
    /// <param name="count">How many allocations fail; 0 cancels.</param>
    /// <exception cref="HmmException">EINVAL for a negative count.</exception>
    public void FailNextAllocations(int count)
    {
        ThrowIfNegative(count, nameof(count));
        Volatile.Write(ref _failAllocations, count);
    }

    /// <summary>Makes the next <paramref name="count"/> valid calls of <see cref="ICopyEngine.Copy"/> fail with EIO, copying nothing.</summary>
    /// <param name="count">How many copies fail; 0 cancels.</param>
    /// <exception cref="HmmException">EINVAL for a negative count.</exception>
    public void FailNextCopies(int count)
    {
        ThrowIfNegative(count, nameof(count));
        Volatile.Write(ref _failCopies, count);
    }

    /// <summary>Delays the completion of the next <paramref name="count"/> successful copies by <paramref name="nanoseconds"/> each.</summary>
    /// <param name="count">How many copies are delayed; 0 cancels.</param>
    /// <param name="nanoseconds">The delay added to each, in virtual nanoseconds.</param>
    /// <exception cref="HmmException">EINVAL for a negative count or delay.</exception>
    public void DelayNextCopies(int count, long nanoseconds)
    {
        ThrowIfNegative(count, nameof(count));
        ThrowIfNegative(nanoseconds, nameof(nanoseconds));
        lock (_delayLock)
        {
            _delayCount = count;
            _delay = nanoseconds;
        }
    }

    /// <summary>Consumes one pending allocation failure, if any.</summary>
    internal bool ConsumeAllocationFailure() => Consume(ref _failAllocations);

    /// <summary>Consumes one pending copy failure, if any.</summary>
    internal bool ConsumeCopyFailure() => Consume(ref _failCopies);

    /// <summary>Consumes one pending copy delay: the nanoseconds to add, or 0.</summary>
    internal long ConsumeCopyDelay()
    {
        if (Volatile.Read(ref _delayCount) == 0)
        {
            return 0;
        }

        lock (_delayLock)
        {
            if (_delayCount == 0)
            {
                return 0;
            }

            _delayCount--;
            return _delay;
        }
    }

    private static bool Consume(ref int pending)
    {
        int seen = Volatile.Read(ref pending);
        while (seen > 0)
        {
            int previous = Interlocked.CompareExchange(ref pending, seen - 1, seen);
            if (previous == seen)
            {
                return true;
            }

            seen = previous;
        }

        return false;
    }

    private static void ThrowIfNegative(long value, string name)
    {
        if (value < 0)
        {
            throw new HmmException(Errno.EINVAL, $"{name} {value} is negative.");
        }
    }
}
