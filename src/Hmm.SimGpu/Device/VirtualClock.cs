using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// Simulated time in nanoseconds (<see cref="IVirtualClock"/>): it starts at 0 and moves only when work is charged
/// on it. Several simulated GPUs of one simulation share one clock.
/// </summary>
/// <remarks>
/// <para>Error model: a negative duration gives <see cref="HmmException"/> EINVAL and leaves the time unchanged.</para>
/// <para>Concurrency model: lock-free (Interlocked); time never goes backwards.</para>
/// </remarks>
public sealed class VirtualClock : IVirtualClock
{
    private long _now;

    /// <inheritdoc/>
    public long Now => Volatile.Read(ref _now);

    /// <inheritdoc/>
    public long Advance(long nanoseconds)
    {
        if (nanoseconds < 0)
        {
            throw new HmmException(Errno.EINVAL, $"A clock advance of {nanoseconds} ns is negative.");
        }

        return Interlocked.Add(ref _now, nanoseconds);
    }

    /// <inheritdoc/>
    public long AdvanceTo(long time)
    {
        long seen = Volatile.Read(ref _now);
        while (seen < time)
        {
            long previous = Interlocked.CompareExchange(ref _now, time, seen);
            if (previous == seen)
            {
                return time;
            }

            seen = previous;
        }

        return seen;
    }
}
