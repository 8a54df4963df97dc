using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// One interval subscription (<c>struct mmu_interval_notifier</c>): a driver's interest in
/// <c>[Start, End)</c> of one address space, and the read side of the collision-retry sequence that lets the
/// driver build device mappings of that range without holding any address-space lock.
/// </summary>
/// <remarks>
/// <para>The driver pattern (as in <c>hmm_range_fault</c> users):</para>
/// <code>
/// again:
///   ulong seq = sub.ReadBegin();
///   ... read the CPU page tables of the range (may sleep, may fault) ...
///   lock (driverLock)
///   {
///       if (sub.ReadRetry(seq)) goto again;   // an invalidation hit the range meanwhile
///       ... program the device page table ...
///   }
/// </code>
/// <para>The callback, <see cref="IMmuIntervalNotifierOps.Invalidate"/>, takes the same <c>driverLock</c> and
/// calls <see cref="SetSequence"/>. Created by <see cref="MmuNotifierSubscriptions.Insert"/>, ended by
/// <see cref="MmuNotifierSubscriptions.Remove"/>.</para>
/// <para>Concurrency model: the subscription's sequence word is written only by <see cref="SetSequence"/> (under
/// the driver's lock, from a callback) and by the owning <see cref="MmuNotifierSubscriptions"/> under its lock
/// at insert time; it is read with volatile reads. The tree links, the deferred-list links and the state belong
/// to the owner and change only under the owner's lock (see <see cref="MmuNotifierSubscriptions"/>).</para>
/// <para>The interval is closed, <c>[Start, Last]</c>, like the kernel's interval tree; <see cref="End"/> is
/// <c>Last + 1</c> except for an interval that includes the top address, whose one-past-the-end does not fit in
/// 64 bits (see <see cref="End"/>).</para>
/// </remarks>
public sealed class MmuIntervalNotifier
{
    // The subscription's copy of the invalidation sequence (interval_sub->invalidate_seq). Always odd.
    private ulong _invalidateSeq;

    // Intrusive interval-tree links and augmentation, owned by IntervalTree. _treeHeight == 0: in no tree.
    internal MmuIntervalNotifier? _treeLeft;
    internal MmuIntervalNotifier? _treeRight;
    internal MmuIntervalNotifier? _treeParent;
    internal ulong _subtreeLast;
    internal int _treeHeight;

    // Intrusive deferred-list links (the kernel's deferred_item), owned by MmuNotifierSubscriptions.
    internal MmuIntervalNotifier? _deferredPrev;
    internal MmuIntervalNotifier? _deferredNext;
    internal volatile IntervalState _state;

    internal MmuIntervalNotifier(MmuNotifierSubscriptions subscriptions, ulong start, ulong last, IMmuIntervalNotifierOps ops)
    {
        Subscriptions = subscriptions;
        Start = start;
        Last = last;
        Ops = ops;
    }

    /// <summary>Where a subscription stands in its owner's tree; changed only under the owner's lock.</summary>
    internal enum IntervalState
    {
        /// <summary>Inserted while the tree was being invalidated: on the deferred list, not yet in the tree.</summary>
        PendingInsert,

        /// <summary>In the tree: callbacks may run.</summary>
        Live,

        /// <summary>Removal requested while the tree was being invalidated: still in the tree and on the deferred list.</summary>
        PendingRemove,

        /// <summary>Out of the tree for good: no callback runs any more.</summary>
        Removed,
    }

    /// <summary>The first address of the interval (<c>interval_tree.start</c>).</summary>
    public ulong Start { get; }

    /// <summary>The last address of the interval, inclusive (<c>interval_tree.last</c>): <c>start + length - 1</c>.</summary>
    public ulong Last { get; }

    /// <summary>
    /// One past the last address of the interval: <see cref="Last"/> + 1, except when <see cref="Last"/> is
    /// <see cref="ulong.MaxValue"/>, where it saturates at <see cref="ulong.MaxValue"/> (the value the kernel's
    /// ranges use for "to the top", as the release range <c>[0, ULONG_MAX)</c> does). Only then does
    /// <c>[Start, End)</c> leave out the top address; <see cref="Last"/> is always exact.
    /// </summary>
    public ulong End => Last == ulong.MaxValue ? ulong.MaxValue : Last + 1;

    /// <summary>The driver's callbacks.</summary>
    internal IMmuIntervalNotifierOps Ops { get; }

    /// <summary>The address space's notifier subscriptions this interval belongs to.</summary>
    internal MmuNotifierSubscriptions Subscriptions { get; }

    /// <summary>The address space this subscription watches (<c>interval_sub->mm</c>).</summary>
    public Mm Mm => Subscriptions.Mm ?? MirroringThrowHelper.ThrowDetached<Mm>();

    /// <summary>
    /// Subscribes to invalidations of <c>[start, start + length)</c> of an address space
    /// (<c>mmu_interval_notifier_insert</c>).
    /// </summary>
    /// <param name="mm">The address space; alive.</param>
    /// <param name="start">The first address.</param>
    /// <param name="length">Bytes, not zero, not wrapping past <see cref="ulong.MaxValue"/>; <c>(0, ulong.MaxValue)</c> watches the whole address space.</param>
    /// <param name="ops">The driver's invalidate callback.</param>
    /// <returns>The subscription.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="HmmException">Error model: invalid argument or state, as <see cref="MmuNotifierSubscriptions.Of"/> and <see cref="MmuNotifierSubscriptions.Insert"/>.</exception>
    public static MmuIntervalNotifier Insert(Mm mm, ulong start, ulong length, IMmuIntervalNotifierOps ops) =>
        MmuNotifierSubscriptions.Of(mm).Insert(start, length, ops);

    /// <summary>Removes this subscription (<c>mmu_interval_notifier_remove</c>); see <see cref="MmuNotifierSubscriptions.Remove"/>.</summary>
    /// <exception cref="KernelBugException">Error model: broken invariant. Called from inside a notifier callback, or twice.</exception>
    public void Remove() => Subscriptions.Remove(this);

    /// <summary>Whether <see cref="MmuNotifierSubscriptions.Remove"/> has completed for this subscription.</summary>
    internal bool IsRemoved => _state == IntervalState.Removed;

    /// <summary>
    /// Begins a read-side critical section over the interval (<c>mmu_interval_read_begin</c>). If an
    /// invalidation covering this subscription is in progress right now, sleeps until it (and every invalidation
    /// that runs together with it) has ended.
    /// </summary>
    /// <returns>The sequence to pass to <see cref="ReadRetry"/> or <see cref="CheckRetry"/>. This call does not loop:
    /// a retry may already be due by the time it returns.</returns>
    /// <exception cref="KernelBugException">Error model: broken invariant. Called from inside a notifier callback (it would deadlock), or after
    /// the subscription was removed.</exception>
    public ulong ReadBegin() => Subscriptions.ReadBegin(this);

    /// <summary>
    /// Ends a read-side critical section (<c>mmu_interval_read_retry</c>): true when an invalidation hit the
    /// interval since <see cref="ReadBegin"/> returned <paramref name="sequence"/>, so whatever was read must be
    /// thrown away. Call it under the driver lock that <see cref="IMmuIntervalNotifierOps.Invalidate"/> takes
    /// around <see cref="SetSequence"/>; a false answer is then stable until that lock is dropped.
    /// </summary>
    /// <param name="sequence">The value <see cref="ReadBegin"/> returned.</param>
    /// <returns>True when the caller must retry.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadRetry(ulong sequence)
    {
        bool retry = Volatile.Read(ref _invalidateSeq) != sequence;
        if (retry)
        {
            HmmMetrics.NotifierReadRetries.Add(1);
        }

        return retry;
    }

    /// <summary>
    /// A lockless hint that a retry is already due (<c>mmu_interval_check_retry</c>), for bailing out of long
    /// work early. True is reliable; false proves nothing: only <see cref="ReadRetry"/> under the driver lock does.
    /// </summary>
    /// <param name="sequence">The value <see cref="ReadBegin"/> returned.</param>
    /// <returns>True when an invalidation has certainly hit the interval since <see cref="ReadBegin"/>.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool CheckRetry(ulong sequence) => Volatile.Read(ref _invalidateSeq) != sequence;

    /// <summary>
    /// Records that an invalidation hit the interval (<c>mmu_interval_set_seq</c>). Call it from
    /// <see cref="IMmuIntervalNotifierOps.Invalidate"/>, under the driver lock that also guards
    /// <see cref="ReadRetry"/>, with the sequence the callback received.
    /// </summary>
    /// <param name="currentSequence">The <c>currentSequence</c> argument of the callback; always odd.</param>
    /// <exception cref="KernelBugException">Error model: broken invariant. <paramref name="currentSequence"/> is even, so it cannot be the value a
    /// callback received; nothing changes.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void SetSequence(ulong currentSequence)
    {
        if ((currentSequence & 1) == 0)
        {
            MirroringThrowHelper.ThrowEvenSequence(currentSequence);
        }

        Volatile.Write(ref _invalidateSeq, currentSequence);
    }

    /// <summary>Formats the interval closed, <c>[Start, Last]</c>, which is exact even when it includes the top address.</summary>
    /// <returns>For example <c>interval [0x1000, 0x1fff]</c>.</returns>
    public override string ToString() => $"interval [0x{Start:x}, 0x{Last:x}]";

    /// <summary>The subscription's sequence word, read by the owner under its lock.</summary>
    internal ulong SequenceUnsynchronized
    {
        get => Volatile.Read(ref _invalidateSeq);
        set => Volatile.Write(ref _invalidateSeq, value);
    }
}
