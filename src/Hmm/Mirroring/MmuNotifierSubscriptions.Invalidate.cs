
namespace Hmm;

// Invalidation: start, end and release. Order of callbacks, in start, end and release alike: interval
// subscriptions first, classic notifiers second, as in the kernel. Besides matching it, this order keeps the
// failure path short: when an interval callback refuses a non-blockable range, no classic notifier has started
// yet, so none needs an end; and the interval part's end (which wakes sleeping readers) does not wait for the
// classic notifiers' end callbacks.
public sealed partial class MmuNotifierSubscriptions
{
    /// <summary>
    /// Tells every subscriber that <c>[range.Start, range.End)</c> is about to change
    /// (<c>mmu_notifier_invalidate_range_start</c>, or <c>..._nonblock</c> when the range is not blockable):
    /// calls <see cref="IMmuIntervalNotifierOps.Invalidate"/> on each interval subscription that intersects the
    /// range, then <see cref="IMmuNotifierOps.InvalidateRangeStart"/> on each classic notifier.
    /// </summary>
    /// <param name="range">The range, with its event, blockability and owner.</param>
    /// <returns>
    /// True when every subscriber is done: the caller changes the page tables, then calls
    /// <see cref="InvalidateRangeEnd"/> with the same range. False only for a non-blockable range that a
    /// subscriber could not handle without sleeping (<c>-EAGAIN</c>): the walk stopped at that subscriber, the
    /// invalidation is already ended, and the caller must neither change the range nor call
    /// <see cref="InvalidateRangeEnd"/>.
    /// </returns>
    /// <exception cref="KernelBugException">Error model: broken invariant. The range is empty or reversed; nothing changes.</exception>
    /// <remarks>
    /// <para>May run on several threads at once and may nest on one thread. Allocates nothing.</para>
    /// <para>A refusal by a classic notifier also ends the interval half of the invalidation, so that false
    /// always means "fully ended" (the kernel returns the error with the interval half still active).</para>
    /// <para>If a callback throws, the invalidation is ended as for a false return (classic notifiers that had
    /// started get their end) and the exception propagates; the caller must not call
    /// <see cref="InvalidateRangeEnd"/>.</para>
    /// </remarks>
    internal bool InvalidateRangeStart(in MmuNotifierRange range)
    {
        if (range.Start >= range.End)
        {
            MirroringThrowHelper.ThrowEmptyRange(range.Start, range.End);
        }

        HmmMetrics.RecordInvalidation(range.Event);
        IntervalTree.OverlapEnumerator walk;
        ulong currentSequence;
        bool hit;
        lock (_lock)
        {
            _activeInvalidateRanges++;
            _openRanges++;
            walk = _tree.Overlapping(range.Start, range.End - 1);
            hit = walk.MoveNext();
            if (hit)
            {
                _invalidateSeq |= 1;
            }

            currentSequence = _invalidateSeq;
        }

        // From here until this epoch ends the tree cannot change, so the walk continues without the lock.
        s_callbackDepth++;
        int visited = 0;
        try
        {
            try
            {
                if (hit && !InvokeIntervalCallbacks(ref walk, range, currentSequence, ref visited))
                {
                    EndInvalidation(closeOpenRange: true);
                    TraceInvalidation(range, visited);
                    return false;
                }
            }
            catch
            {
                EndInvalidation(closeOpenRange: true);
                throw;
            }

            TraceInvalidation(range, visited);
            return StartNotifiers(range);
        }
        finally
        {
            s_callbackDepth--;
        }
    }

    /// <summary>
    /// Tells every subscriber that the change of <paramref name="range"/> is complete
    /// (<c>mmu_notifier_invalidate_range_end</c>). Ends this invalidation's share of the interval tree's epoch:
    /// when it is the last active one, the sequence becomes even, deferred inserts and removes are applied and
    /// sleepers wake. Then calls <see cref="IMmuNotifierOps.InvalidateRangeEnd"/> on each classic notifier.
    /// </summary>
    /// <param name="range">The range passed to the <see cref="InvalidateRangeStart"/> that returned true.</param>
    /// <exception cref="KernelBugException">Error model: broken invariant. The range is empty, or no invalidation is open at all; nothing
    /// changes.</exception>
    /// <remarks>Allocates nothing. If a classic end callback throws, the remaining ones are skipped and the
    /// exception propagates; the invalidation is ended regardless.</remarks>
    internal void InvalidateRangeEnd(in MmuNotifierRange range)
    {
        if (range.Start >= range.End)
        {
            MirroringThrowHelper.ThrowEmptyRange(range.Start, range.End);
        }

        // The array is read before this invalidation's open count is dropped, so a notifier registered meanwhile
        // (Register waits for no open range) cannot get an end without its start.
        if (Volatile.Read(ref _notifiers).Length == 0)
        {
            EndInvalidationChecked(range, closeOpenRange: true);
            return;
        }

        s_callbackDepth++;
        int phase = _srcu.ReadLock();
        try
        {
            MmuNotifier[] notifiers = Volatile.Read(ref _notifiers);
            EndInvalidationChecked(range, closeOpenRange: notifiers.Length == 0);
            if (notifiers.Length != 0)
            {
                try
                {
                    foreach (MmuNotifier notifier in notifiers)
                    {
                        notifier.Ops.InvalidateRangeEnd(range);
                    }
                }
                finally
                {
                    lock (_lock)
                    {
                        CloseOpenRangeUnsynchronized();
                    }
                }
            }
        }
        finally
        {
            _srcu.ReadUnlock(phase);
            s_callbackDepth--;
        }
    }

    /// <summary>
    /// The address space is exiting (<c>mmu_notifier_release</c>): every interval subscription gets
    /// <see cref="IMmuIntervalNotifierOps.Invalidate"/> once with <see cref="MmuNotifierEvent.Release"/> over
    /// <c>[0, ulong.MaxValue)</c>, blockable; then every classic notifier gets <see cref="IMmuNotifierOps.Release"/>
    /// (unless <see cref="Unregister"/> already delivered it) and is dropped from the list, so it gets no callback
    /// afterwards. Then <see cref="Insert"/> and <see cref="Register"/> fail with <see cref="Errno.EINVAL"/>;
    /// interval subscriptions stay in the tree until the driver removes them, and later invalidations (the exit's
    /// own <see cref="MmuNotifierEvent.Unmap"/> of every area) still reach them. A second call does nothing.
    /// </summary>
    /// <exception cref="KernelBugException">Error model: broken invariant. Called from inside a notifier callback; nothing changes.</exception>
    /// <remarks>If an invalidation that hit the tree is in progress, this call first sleeps until it ends, so
    /// that subscriptions whose insert was deferred are in the tree and get their release callback too. If a
    /// callback throws, the remaining ones are skipped and the exception propagates.</remarks>
    internal void Release()
    {
        if (s_callbackDepth != 0)
        {
            MirroringThrowHelper.ThrowFromCallback("Release");
        }

        var range = new MmuNotifierRange(0, ulong.MaxValue, MmuNotifierEvent.Release, Blockable: true);
        IntervalTree.OverlapEnumerator walk;
        ulong currentSequence;
        bool hit;
        int intervalCount;
        lock (_lock)
        {
            if (_released)
            {
                return;
            }

            _released = true;
            if (IsInvalidatingUnsynchronized)
            {
                // Inserts are refused from now on, so once this epoch ends no insert can be pending.
                WaitForSequenceChangeUnsynchronized(_invalidateSeq);
            }

            _activeInvalidateRanges++;
            walk = _tree.Overlapping(range.Start, range.End - 1);
            hit = walk.MoveNext();
            if (hit)
            {
                _invalidateSeq |= 1;
            }

            currentSequence = _invalidateSeq;
            intervalCount = _tree.Count;
        }

        s_callbackDepth++;
        int visited = 0;
        try
        {
            try
            {
                if (hit)
                {
                    InvokeIntervalCallbacks(ref walk, range, currentSequence, ref visited);
                }
            }
            finally
            {
                EndInvalidation(closeOpenRange: false);
            }

            TraceInvalidation(range, visited);

            int notifierCount = ReleaseNotifiers();
            Log.NotifiersReleased(_logger, intervalCount, notifierCount);
        }
        finally
        {
            s_callbackDepth--;
        }
    }

    /// <inheritdoc cref="InvalidateRangeStart"/>
    bool IMmNotifierChain.InvalidateRangeStart(in MmuNotifierRange range) => InvalidateRangeStart(range);

    /// <inheritdoc cref="InvalidateRangeEnd"/>
    void IMmNotifierChain.InvalidateRangeEnd(in MmuNotifierRange range) => InvalidateRangeEnd(range);

    /// <inheritdoc cref="Release"/>
    void IMmNotifierChain.Release() => Release();

    // Calls the interval callbacks from the current node of 'walk' on, counting them in 'visited'. False: a
    // non-blockable range was refused.
    private bool InvokeIntervalCallbacks(ref IntervalTree.OverlapEnumerator walk, in MmuNotifierRange range, ulong currentSequence, ref int visited)
    {
        do
        {
            MmuIntervalNotifier subscription = walk.Current;
            visited++;
            if (!subscription.Ops.Invalidate(subscription, range, currentSequence))
            {
                if (!range.Blockable)
                {
                    return false;
                }

                Interlocked.Increment(ref _ignoredBlockableFailures);
                Log.IntervalBlockableFailure(_logger, subscription, range.Start, range.End, range.Event);
            }
        }
        while (walk.MoveNext());

        return true;
    }

    // One Invalidate trace event per invalidation of an address space that has subscriptions (detached test
    // subscriptions have no machine to trace into).
    private void TraceInvalidation(in MmuNotifierRange range, int visited)
    {
        if (Mm is { } mm && mm.Memory.Trace is { IsEnabled: true } trace)
        {
            trace.Emit(TraceEvent.Invalidate(range.Start, range.End, range.Event, (ulong)visited, trace.VirtualNow));
        }
    }

    // The classic half of a start. On a refused non-blockable range, the notifiers that started get their end
    // at once (a C# notifier always has an end) and the whole invalidation is ended.
    private bool StartNotifiers(in MmuNotifierRange range)
    {
        if (Volatile.Read(ref _notifiers).Length == 0)
        {
            return true;
        }

        int phase = _srcu.ReadLock();
        try
        {
            MmuNotifier[] notifiers = Volatile.Read(ref _notifiers);
            int started = 0;
            bool refused = false;
            try
            {
                for (; started < notifiers.Length; started++)
                {
                    IMmuNotifierOps ops = notifiers[started].Ops;
                    if (!ops.InvalidateRangeStart(range))
                    {
                        if (!range.Blockable)
                        {
                            refused = true;
                            break;
                        }

                        Interlocked.Increment(ref _ignoredBlockableFailures);
                        Log.ClassicBlockableFailure(_logger, ops, range.Start, range.End, range.Event);
                    }
                }
            }
            catch
            {
                AbandonStartedNotifiers(notifiers, started, range);
                throw;
            }

            if (refused)
            {
                AbandonStartedNotifiers(notifiers, started, range);
                return false;
            }

            return true;
        }
        finally
        {
            _srcu.ReadUnlock(phase);
        }
    }

    private void AbandonStartedNotifiers(MmuNotifier[] notifiers, int started, in MmuNotifierRange range)
    {
        try
        {
            for (int i = 0; i < started; i++)
            {
                notifiers[i].Ops.InvalidateRangeEnd(range);
            }
        }
        finally
        {
            EndInvalidation(closeOpenRange: true);
        }
    }

    // Calls every classic release once, then empties the list and waits out readers of the old list.
    private int ReleaseNotifiers()
    {
        MmuNotifier[] notifiers;
        int phase = _srcu.ReadLock();
        try
        {
            notifiers = Volatile.Read(ref _notifiers);
            foreach (MmuNotifier notifier in notifiers)
            {
                if (notifier.TryClaimRelease())
                {
                    notifier.Ops.Release();
                }
            }
        }
        finally
        {
            _srcu.ReadUnlock(phase);
        }

        lock (_lock)
        {
            Volatile.Write(ref _notifiers, []);
        }

        _srcu.Synchronize();
        return notifiers.Length;
    }

    private void EndInvalidation(bool closeOpenRange)
    {
        lock (_lock)
        {
            EndInvalidationUnsynchronized(closeOpenRange);
        }
    }

    private void EndInvalidationChecked(in MmuNotifierRange range, bool closeOpenRange)
    {
        lock (_lock)
        {
            if (_openRanges == 0)
            {
                MirroringThrowHelper.ThrowEndWithoutStart(range.Start, range.End);
            }

            EndInvalidationUnsynchronized(closeOpenRange);
        }
    }

    // The interval half of an end (mn_itree_inv_end): the last active invalidation closes an odd epoch, applies
    // the deferred list and wakes every sleeper.
    private void EndInvalidationUnsynchronized(bool closeOpenRange)
    {
        bool wake = false;
        if (closeOpenRange)
        {
            wake = --_openRanges == 0;
        }

        if (--_activeInvalidateRanges == 0 && IsInvalidatingUnsynchronized)
        {
            _invalidateSeq++;
            ApplyDeferredUnsynchronized();
            wake = true;
        }

        if (wake && _waiters != 0)
        {
            Monitor.PulseAll(_lock);
        }
    }

    private void CloseOpenRangeUnsynchronized()
    {
        if (--_openRanges == 0 && _waiters != 0)
        {
            Monitor.PulseAll(_lock);
        }
    }
}
