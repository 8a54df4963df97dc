using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// A lifetime reference count with a kill switch: the kernel's <c>percpu_ref</c> as a pagemap uses it. It starts
/// live with one initial reference. <see cref="Kill"/> refuses new live references and drops the initial one;
/// when the count then reaches zero, <see cref="Idle"/> completes.
/// </summary>
/// <remarks>
/// <para>Internal: only the pagemap drives its lifetime; drivers observe it through
/// <see cref="DevPagemap.ReferenceCount"/> and <see cref="DevPagemap.State"/>.</para>
/// <para>Concurrency model: the whole state is one 64-bit word, <c>[0:1][dead:1][count:62]</c>, changed only by
/// compare-and-swap, so a live get can never succeed after the kill that made the count reach zero, and a get
/// that would carry the count into the dead bit is refused before it changes anything.</para>
/// <para>Each pagemap owns exactly one of these and no API accepts one from outside, so two pagemaps can never
/// share a lifetime reference (the p2pdma shared-ref bug class cannot be built).</para>
/// </remarks>
internal sealed class LifetimeRef
{
    /// <summary>The largest count the word can hold; a get beyond it is <see cref="Errno.EOVERFLOW"/>.</summary>
    internal const long MaxCount = DeadBit - 1;

    private const long DeadBit = 1L << 62;
    private const long CountMask = DeadBit - 1;

    private readonly TaskCompletionSource _idle = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _state = 1;

    /// <summary>Whether <see cref="Kill"/> has run (<c>percpu_ref_is_dying</c>).</summary>
    public bool IsDying => (Volatile.Read(ref _state) & DeadBit) != 0;

    /// <summary>The current count, including the initial reference until the kill.</summary>
    public long Count => Volatile.Read(ref _state) & CountMask;

    /// <summary>Completes when the count reaches zero after the kill (<c>pgmap->done</c>).</summary>
    public Task Idle => _idle.Task;

    /// <summary>Takes one reference unless the ref is dying (<c>percpu_ref_tryget_live</c>).</summary>
    /// <returns>False once killed.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EOVERFLOW"/>: the count is already at <see cref="MaxCount"/>; nothing changes.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGetLive()
    {
        long state = Volatile.Read(ref _state);
        if ((state & DeadBit) == 0 && (state & CountMask) < MaxCount
            && Interlocked.CompareExchange(ref _state, state + 1, state) == state)
        {
            return true;
        }

        return TryGetLiveSlow(1);
    }

    /// <summary>Takes <paramref name="count"/> references unless the ref is dying (<c>percpu_ref_tryget_live_many</c>).</summary>
    /// <param name="count">How many references; at least 1.</param>
    /// <returns>False once killed (whatever the count); nothing changes.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is below 1: a caller bug inside the library.</exception>
    /// <exception cref="HmmException">
    /// <see cref="Errno.EOVERFLOW"/>: on a live ref, the count would pass <see cref="MaxCount"/> (it would reach the
    /// dead bit, e.g. <c>1L &lt;&lt; 62</c>, or wrap, e.g. <see cref="long.MaxValue"/>). Nothing changes.
    /// </exception>
    public bool TryGetLive(long count)
    {
        if (count < 1)
        {
            ThrowHelper.ThrowCountOutOfRange(count);
        }

        return TryGetLiveSlow(count);
    }

    /// <summary>Takes a reference unless the count is already zero, even when dying (<c>percpu_ref_tryget</c>).</summary>
    /// <returns>False once the count reached zero.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EOVERFLOW"/>: the count is already at <see cref="MaxCount"/>; nothing changes.</exception>
    public bool TryGet()
    {
        long state = Volatile.Read(ref _state);
        while ((state & CountMask) != 0)
        {
            if ((state & CountMask) == MaxCount)
            {
                ThrowHelper.ThrowLifetimeOverflow(MaxCount, 1);
            }

            long seen = Interlocked.CompareExchange(ref _state, state + 1, state);
            if (seen == state)
            {
                return true;
            }

            state = seen;
        }

        return false;
    }

    /// <summary>Drops one reference (<c>percpu_ref_put</c>); completes <see cref="Idle"/> at zero.</summary>
    /// <exception cref="KernelBugException">As <see cref="Put(long)"/>.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Put()
    {
        // Fast path: more than one reference, so this put can neither reach zero nor take the initial reference.
        long state = Volatile.Read(ref _state);
        if ((state & CountMask) > 1 && Interlocked.CompareExchange(ref _state, state - 1, state) == state)
        {
            return;
        }

        PutSlow(1);
    }

    /// <summary>Drops <paramref name="count"/> references (<c>percpu_ref_put_many</c>); completes <see cref="Idle"/> at zero.</summary>
    /// <param name="count">How many references; at least 1.</param>
    /// <exception cref="KernelBugException">
    /// More puts than gets: the count would go below zero, or, before <see cref="Kill"/>, would drop the initial
    /// reference (only the kill drops it, so a live ref is never idle). The count is unchanged.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is below 1.</exception>
    public void Put(long count)
    {
        if (count < 1)
        {
            ThrowHelper.ThrowCountOutOfRange(count);
        }

        PutSlow(count);
    }

    /// <summary>Refuses new live references and drops the initial one (<c>percpu_ref_kill</c>). Idempotent.</summary>
    /// <returns>True for the call that killed it; false if it was already dying.</returns>
    public bool Kill()
    {
        long state = Volatile.Read(ref _state);
        while ((state & DeadBit) == 0)
        {
            long seen = Interlocked.CompareExchange(ref _state, state | DeadBit, state);
            if (seen == state)
            {
                PutSlow(1);
                return true;
            }

            state = seen;
        }

        return false;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool TryGetLiveSlow(long count)
    {
        long state = Volatile.Read(ref _state);
        while ((state & DeadBit) == 0)
        {
            if (count > MaxCount - (state & CountMask))
            {
                ThrowHelper.ThrowLifetimeOverflow(state & CountMask, count);
            }

            long seen = Interlocked.CompareExchange(ref _state, state + count, state);
            if (seen == state)
            {
                return true;
            }

            state = seen;
        }

        return false;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void PutSlow(long count)
    {
        long state = Volatile.Read(ref _state);
        while (true)
        {
            long putable = (state & CountMask) - ((state & DeadBit) == 0 ? 1 : 0);
            if (putable < count)
            {
                ThrowHelper.ThrowLifetimePutBelowZero(state, count, DeadBit, CountMask);
            }

            long seen = Interlocked.CompareExchange(ref _state, state - count, state);
            if (seen == state)
            {
                if (((state - count) & CountMask) == 0)
                {
                    _idle.TrySetResult();
                }

                return;
            }

            state = seen;
        }
    }
}
