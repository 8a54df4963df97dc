namespace Hmm;

/// <summary>
/// Arms failures at <see cref="FaultPoint"/>s of one <see cref="PhysicalMemory"/>. Each arming fails exactly one
/// future pass through the point, after letting <c>skip</c> passes succeed, then disarms itself.
/// </summary>
/// <remarks>Concurrency model: arming and consuming are serialised by a private lock; the disarmed fast path is a
/// single volatile read, so the hooks cost nothing when unused.</remarks>
public sealed class FaultInjector
{
    private readonly Lock _lock = new();
    private readonly int[] _skipsLeft = new int[Enum.GetValues<FaultPoint>().Length];
    private int _armedMask;

    /// <summary>Makes one future pass through <paramref name="point"/> fail.</summary>
    /// <param name="point">The step to fail.</param>
    /// <param name="skip">How many passes to let succeed first.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="skip"/> is negative or the point is unknown.</exception>
    public void FailNext(FaultPoint point, int skip = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(skip);
        if ((uint)point >= (uint)_skipsLeft.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(point), point, "Unknown fault point.");
        }

        lock (_lock)
        {
            _skipsLeft[(int)point] = skip;
            Volatile.Write(ref _armedMask, _armedMask | (1 << (int)point));
        }
    }

    /// <summary>Disarms every point.</summary>
    public void Reset()
    {
        lock (_lock)
        {
            Volatile.Write(ref _armedMask, 0);
        }
    }

    /// <summary>Whether this pass through <paramref name="point"/> must fail. Consumes the arming when it says yes.</summary>
    internal bool ShouldFail(FaultPoint point)
    {
        if ((Volatile.Read(ref _armedMask) & (1 << (int)point)) == 0)
        {
            return false;
        }

        lock (_lock)
        {
            int bit = 1 << (int)point;
            if ((_armedMask & bit) == 0)
            {
                return false;
            }

            if (_skipsLeft[(int)point]-- > 0)
            {
                return false;
            }

            Volatile.Write(ref _armedMask, _armedMask & ~bit);
            return true;
        }
    }
}
