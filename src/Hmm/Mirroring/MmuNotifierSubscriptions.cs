using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hmm;

/// <summary>
/// The MMU notifier subscriptions of one address space (<c>struct mmu_notifier_subscriptions</c>, reached in the
/// kernel as <c>mm->notifier_subscriptions</c>): the interval subscriptions in an interval tree with their
/// collision-retry sequence, and the classic whole-address-space notifiers. Reached with <see cref="Of"/>. The
/// address space (and only it) calls <see cref="InvalidateRangeStart"/> and <see cref="InvalidateRangeEnd"/>
/// around every change to its page tables and <see cref="Release"/> when it exits; drivers call
/// <see cref="Insert"/>, <see cref="Remove"/>, <see cref="Register"/> and <see cref="Unregister"/>.
/// </summary>
/// <remarks>
/// <para>The sequence scheme. <see cref="InvalidateSequence"/> starts at 2 and is even while no interval is being
/// invalidated. An invalidation whose range intersects at least one subscription makes it odd
/// (<c>seq |= 1</c>); it stays odd while any invalidation is active (they may nest on one thread and run in
/// parallel on several), and the end of the last one makes it even again (<c>seq++</c>). Each callback stores
/// the odd value in its subscription (<see cref="MmuIntervalNotifier.SetSequence"/>), so a reader that began
/// before sees a different value in <see cref="MmuIntervalNotifier.ReadRetry"/>, and a reader that begins during
/// the invalidation finds its subscription's value equal to the global one and sleeps in
/// <see cref="MmuIntervalNotifier.ReadBegin"/> until the sequence moves on.</para>
/// <para>While the sequence is odd the tree is frozen: callbacks are called from a walk over the tree that runs
/// without any lock, so <see cref="Insert"/> and <see cref="Remove"/> queue their change on the deferred list
/// and the end of the last invalidation applies it, then wakes every sleeper (the kernel's scheme, which never
/// makes an invalidation wait for a tree lock). While the sequence is even no walk is running, so the tree
/// changes at once.</para>
/// <para>Concurrency model:</para>
/// <list type="bullet">
/// <item><c>_lock</c> (the kernel's <c>subscriptions-&gt;lock</c> spinlock, plus its wait queue <c>wq</c>) guards
/// the sequence, both counters of active invalidations, the tree's shape, the deferred list, every
/// subscription's state, the released flag and the publication of the classic notifier array. It is never held
/// while a driver callback runs. Sleepers (<see cref="MmuIntervalNotifier.ReadBegin"/>, <see cref="Remove"/>,
/// <see cref="Register"/>, <see cref="Release"/>) wait on it with <see cref="Monitor.Wait(object)"/>, counted in
/// <c>_waiters</c>; whoever ends an odd epoch or closes the last open invalidation pulses it under the lock.</item>
/// <item>The classic notifiers are an immutable array, replaced under <c>_lock</c> and read without it inside a
/// <see cref="SleepableRcu"/> read section (the kernel's SRCU); <see cref="Unregister"/> replaces the array, then
/// waits for every section that might still hold the old one.</item>
/// <item>Per thread, <c>s_callbackDepth</c> counts the notifier callbacks this thread is inside, so the calls that
/// would deadlock there (<see cref="Remove"/>, <see cref="MmuIntervalNotifier.ReadBegin"/>, <see cref="Register"/>,
/// <see cref="Unregister"/>, <see cref="Release"/>) throw <see cref="KernelBugException"/> instead, much as
/// lockdep reports them in the kernel.</item>
/// </list>
/// <para>Hot paths: <see cref="InvalidateRangeStart"/> and <see cref="InvalidateRangeEnd"/> allocate nothing;
/// they visit only the subscriptions that intersect the range (O(log n + k) for non-overlapping
/// subscriptions).</para>
/// </remarks>
public sealed partial class MmuNotifierSubscriptions : IMmNotifierChain
{
    // Per thread: how many notifier callbacks of any address space this thread is inside (see the remarks).
    [ThreadStatic]
    private static int s_callbackDepth;

    // Guards everything listed in the class remarks; never held across a driver callback; also the wait queue.
    private readonly object _lock = new();
    private readonly IntervalTree _tree = new();
    private readonly SleepableRcu _srcu = new();
    private readonly ILogger _logger;

    // Under _lock. invalidate_seq: even when idle, odd while an invalidation that hit the tree is active.
    private ulong _invalidateSeq = 2;

    // Under _lock. active_invalidate_ranges: invalidations between start and end (Release's included).
    private long _activeInvalidateRanges;

    // Under _lock. InvalidateRangeStart/End pairs not yet fully ended, classic end callbacks included; Register
    // waits for zero so a new classic notifier never sees an end without its start.
    private long _openRanges;

    // Under _lock. The deferred list (deferred_list): pending inserts and removes, applied when the odd epoch ends.
    private MmuIntervalNotifier? _deferredHead;

    // Under _lock. Threads sleeping on _lock; wakers skip the pulse when zero.
    private int _waiters;

    // Under _lock. Set once by Release; Insert and Register fail afterwards.
    private bool _released;

    // Replaced under _lock, read in an SRCU section. Most recently registered first, like the kernel's hlist.
    private MmuNotifier[] _notifiers = [];

    private long _ignoredBlockableFailures;

    /// <summary>Creates notifier subscriptions not attached to an address space, for tests of the protocol alone.
    /// Drivers reach an address space's subscriptions with <see cref="Of"/>.</summary>
    /// <param name="logger">Where driver bugs and releases are logged; null for none.</param>
    internal MmuNotifierSubscriptions(ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
    }

    private MmuNotifierSubscriptions(Mm mm)
        : this(mm.Logger)
    {
        Mm = mm;
    }

    /// <summary>The address space these subscriptions belong to; null for detached ones (tests only).</summary>
    internal Mm? Mm { get; }

    /// <summary>
    /// The subscriptions of an address space, created on first use (the kernel registers
    /// <c>mm->notifier_subscriptions</c> on the first notifier). Every change to the address space's page tables
    /// is reported to them from then on.
    /// </summary>
    /// <param name="mm">The address space.</param>
    /// <returns>Its subscriptions.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="mm"/> is null.</exception>
    /// <exception cref="HmmException">Error model: invalid state. <see cref="Errno.EINVAL"/>: the address space has exited (the kernel WARNs and returns -EINVAL when <c>mm_users</c> is 0).</exception>
    public static MmuNotifierSubscriptions Of(Mm mm)
    {
        ArgumentNullException.ThrowIfNull(mm);
        if (!mm.IsAlive)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"Address space '{mm.Name}' has exited; no notifier can subscribe to it.");
        }

        return mm.Notifiers as MmuNotifierSubscriptions ?? (MmuNotifierSubscriptions)mm.GetOrSetNotifiers(new MmuNotifierSubscriptions(mm));
    }

    /// <summary>The current invalidation sequence (<c>invalidate_seq</c>): starts at 2, odd while an invalidation
    /// that intersects a subscription is in progress. A snapshot, for diagnostics and tests.</summary>
    internal ulong InvalidateSequence
    {
        get
        {
            lock (_lock)
            {
                return _invalidateSeq;
            }
        }
    }

    /// <summary>Whether the sequence is odd: an invalidation that hit the tree is in progress and the tree is
    /// frozen (<c>mn_itree_is_invalidating</c>). A snapshot.</summary>
    internal bool IsInvalidating => (InvalidateSequence & 1) != 0;

    /// <summary>Invalidations between start and end right now (<c>active_invalidate_ranges</c>). A snapshot.</summary>
    internal long ActiveInvalidateRanges
    {
        get
        {
            lock (_lock)
            {
                return _activeInvalidateRanges;
            }
        }
    }

    /// <summary>Whether <see cref="Release"/> has run: the address space is exiting.</summary>
    internal bool IsReleased
    {
        get
        {
            lock (_lock)
            {
                return _released;
            }
        }
    }

    /// <summary>How many callbacks returned false for a blockable range, a driver bug the kernel WARNs about and
    /// then ignores.</summary>
    public long IgnoredBlockableFailures => Interlocked.Read(ref _ignoredBlockableFailures);

    /// <summary>Subscriptions in the interval tree now (deferred inserts not included).</summary>
    internal int IntervalTreeCount
    {
        get
        {
            lock (_lock)
            {
                return _tree.Count;
            }
        }
    }

    /// <summary>Classic notifiers registered now.</summary>
    internal int NotifierCount => Volatile.Read(ref _notifiers).Length;

    /// <summary>
    /// Subscribes <paramref name="ops"/> to invalidations that intersect <c>[start, start + length)</c>
    /// (<c>mmu_interval_notifier_insert</c>). As in the kernel, any interval that does not wrap is accepted,
    /// aligned or not and wherever it lies: the kernel's test driver watches <c>[0, ULONG_MAX &amp; PAGE_MASK)</c>.
    /// </summary>
    /// <param name="start">First address.</param>
    /// <param name="length">Bytes, not zero; <c>start + length - 1</c> must not pass <see cref="ulong.MaxValue"/>.</param>
    /// <param name="ops">The driver's callback.</param>
    /// <returns>
    /// The subscription. If an invalidation is in progress, it may not be in the tree yet, exactly as in the
    /// kernel: it is then treated as invalidated, so <see cref="MmuIntervalNotifier.ReadBegin"/> on it sleeps
    /// until the in-progress invalidations end. Use the normal read-begin/read-retry flow before building device
    /// mappings of the range.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="ops"/> is null.</exception>
    /// <exception cref="HmmException">Error model: invalid argument or state. <see cref="Errno.EOVERFLOW"/>:
    /// <paramref name="length"/> is zero or the last address wraps (the kernel's only argument check).
    /// <see cref="Errno.EINVAL"/>: the address space has exited and its notifiers were released (the kernel WARNs
    /// and returns <c>-EINVAL</c> when <c>mm_users</c> is 0). Nothing changes on any error.</exception>
    /// <remarks>The sequence of the new subscription follows the kernel: when idle it is the global sequence
    /// minus one (odd, and different from it); when an invalidation is active it equals the global (odd)
    /// sequence, so a <see cref="MmuIntervalNotifier.ReadBegin"/> waits. If invalidations are active but none hit
    /// the tree (sequence even), the sequence is made odd first and the subscription goes straight into the tree:
    /// the active ranges are unknown, so they must be assumed to cover it.</remarks>
    public MmuIntervalNotifier Insert(ulong start, ulong length, IMmuIntervalNotifierOps ops)
    {
        ArgumentNullException.ThrowIfNull(ops);
        if (length == 0 || start + (length - 1) < start)
        {
            MirroringThrowHelper.ThrowInsertOverflow(start, length);
        }

        ulong last = start + (length - 1);
        var subscription = new MmuIntervalNotifier(this, start, last, ops);
        lock (_lock)
        {
            if (_released || Mm is { IsAlive: false })
            {
                MirroringThrowHelper.ThrowReleased("Insert", Mm);
            }

            InsertUnsynchronized(subscription);
        }

        return subscription;
    }

    /// <summary>
    /// Ends a subscription (<c>mmu_interval_notifier_remove</c>). If the tree is being invalidated, the removal
    /// is queued and this call sleeps until the invalidations end. When it returns, no callback of the
    /// subscription is running on any thread and none will run again.
    /// </summary>
    /// <param name="subscription">A subscription from <see cref="Insert"/> on this address space.</param>
    /// <exception cref="ArgumentNullException"><paramref name="subscription"/> is null.</exception>
    /// <exception cref="KernelBugException">Error model: broken invariant. Called from inside a notifier callback (it would deadlock); the
    /// subscription belongs to another address space; or it was already removed. Nothing changes.</exception>
    /// <remarks>The caller must not hold a lock that a callback takes: the sleep waits for callbacks to
    /// finish. A subscription whose insert is still deferred is dropped at once, without sleeping: no callback
    /// could have seen it.</remarks>
    public void Remove(MmuIntervalNotifier subscription)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        if (!ReferenceEquals(subscription.Subscriptions, this))
        {
            MirroringThrowHelper.ThrowForeign("interval subscription");
        }

        if (s_callbackDepth != 0)
        {
            MirroringThrowHelper.ThrowFromCallback("Remove");
        }

        lock (_lock)
        {
            MmuIntervalNotifier.IntervalState state = subscription._state;
            if (state is MmuIntervalNotifier.IntervalState.Removed or MmuIntervalNotifier.IntervalState.PendingRemove)
            {
                MirroringThrowHelper.ThrowAlreadyRemoved(subscription);
            }

            if (!IsInvalidatingUnsynchronized)
            {
                Debug.Assert(state == MmuIntervalNotifier.IntervalState.Live, "Deferred entries exist only while invalidating.");
                _tree.Remove(subscription);
                subscription._state = MmuIntervalNotifier.IntervalState.Removed;
                return;
            }

            if (state == MmuIntervalNotifier.IntervalState.PendingInsert)
            {
                UnlinkDeferredUnsynchronized(subscription);
                subscription._state = MmuIntervalNotifier.IntervalState.Removed;
                return;
            }

            subscription._state = MmuIntervalNotifier.IntervalState.PendingRemove;
            LinkDeferredUnsynchronized(subscription);
            WaitForSequenceChangeUnsynchronized(_invalidateSeq);
            Debug.Assert(subscription._state == MmuIntervalNotifier.IntervalState.Removed, "The epoch's end applies the deferred list.");
        }
    }

    /// <summary>The body of <see cref="MmuIntervalNotifier.ReadBegin"/>.</summary>
    internal ulong ReadBegin(MmuIntervalNotifier subscription)
    {
        if (s_callbackDepth != 0)
        {
            MirroringThrowHelper.ThrowFromCallback("ReadBegin");
        }

        lock (_lock)
        {
            if (subscription._state == MmuIntervalNotifier.IntervalState.Removed)
            {
                MirroringThrowHelper.ThrowUseAfterRemove(subscription);
            }

            // Equal to the global (odd) sequence: an invalidation stored it, or the insert happened during one;
            // either way the interval is being invalidated right now. The subscription's value is always odd and
            // the global one is even when idle, so the wait below ends when the epoch does.
            ulong sequence = subscription.SequenceUnsynchronized;
            if (sequence == _invalidateSeq)
            {
                WaitForSequenceChangeUnsynchronized(sequence);
            }

            return sequence;
        }
    }

    private bool IsInvalidatingUnsynchronized => (_invalidateSeq & 1) != 0;

    private void InsertUnsynchronized(MmuIntervalNotifier subscription)
    {
        if (_activeInvalidateRanges != 0)
        {
            if (IsInvalidatingUnsynchronized)
            {
                // A walk may be running over the frozen tree: defer to the epoch's end.
                subscription._state = MmuIntervalNotifier.IntervalState.PendingInsert;
                LinkDeferredUnsynchronized(subscription);
            }
            else
            {
                // Active ranges that hit nothing run no walk, so the tree may change; but their ranges are unknown
                // and may cover the new interval, so the epoch becomes odd and the subscription counts as hit.
                _invalidateSeq |= 1;
                _tree.Insert(subscription);
                subscription._state = MmuIntervalNotifier.IntervalState.Live;
            }

            subscription.SequenceUnsynchronized = _invalidateSeq;
        }
        else
        {
            Debug.Assert(!IsInvalidatingUnsynchronized, "An odd sequence with no active range.");

            // Odd, different from the global value, and far from any value the global one reaches soon.
            subscription.SequenceUnsynchronized = _invalidateSeq - 1;
            _tree.Insert(subscription);
            subscription._state = MmuIntervalNotifier.IntervalState.Live;
        }
    }

    private void LinkDeferredUnsynchronized(MmuIntervalNotifier subscription)
    {
        subscription._deferredPrev = null;
        subscription._deferredNext = _deferredHead;
        if (_deferredHead is not null)
        {
            _deferredHead._deferredPrev = subscription;
        }

        _deferredHead = subscription;
    }

    private void UnlinkDeferredUnsynchronized(MmuIntervalNotifier subscription)
    {
        if (subscription._deferredPrev is null)
        {
            _deferredHead = subscription._deferredNext;
        }
        else
        {
            subscription._deferredPrev._deferredNext = subscription._deferredNext;
        }

        if (subscription._deferredNext is not null)
        {
            subscription._deferredNext._deferredPrev = subscription._deferredPrev;
        }

        subscription._deferredPrev = null;
        subscription._deferredNext = null;
    }

    // Applies the deferred inserts and removes; called when an odd epoch has just ended, so no walk is running.
    private void ApplyDeferredUnsynchronized()
    {
        MmuIntervalNotifier? entry = _deferredHead;
        _deferredHead = null;
        while (entry is not null)
        {
            MmuIntervalNotifier? next = entry._deferredNext;
            entry._deferredPrev = null;
            entry._deferredNext = null;
            if (entry._state == MmuIntervalNotifier.IntervalState.PendingInsert)
            {
                _tree.Insert(entry);
                entry._state = MmuIntervalNotifier.IntervalState.Live;
            }
            else
            {
                Debug.Assert(entry._state == MmuIntervalNotifier.IntervalState.PendingRemove, "Only pending entries are deferred.");
                _tree.Remove(entry);
                entry._state = MmuIntervalNotifier.IntervalState.Removed;
            }

            entry = next;
        }
    }

    // Sleeps (releasing _lock) until the global sequence differs from 'sequence'.
    private void WaitForSequenceChangeUnsynchronized(ulong sequence)
    {
        _waiters++;
        try
        {
            while (_invalidateSeq == sequence)
            {
                Monitor.Wait(_lock);
            }
        }
        finally
        {
            _waiters--;
        }
    }
}
