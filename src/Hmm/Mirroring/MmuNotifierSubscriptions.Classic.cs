namespace Hmm;

// Classic notifiers: registration and unregistration. The list is an immutable array, replaced under _lock
// and read inside an SRCU section; unregistration replaces it and then waits for the sections that may still
// be using the old array, which is how the kernel guarantees that no callback runs after unregister returns.
public sealed partial class MmuNotifierSubscriptions
{
    /// <summary>
    /// Registers a classic notifier that hears about every invalidation of this address space and about its
    /// exit (<c>mmu_notifier_register</c>). Notifiers are called most recently registered first, after the
    /// interval subscriptions.
    /// </summary>
    /// <param name="ops">The driver's callbacks.</param>
    /// <returns>The registration, for <see cref="Unregister"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="ops"/> is null.</exception>
    /// <exception cref="HmmException">Error model: invalid state. <see cref="Errno.EINVAL"/>: the address space has
    /// exited and its notifiers were released (the kernel's register requires <c>mm_users &gt; 0</c>). Nothing
    /// changes.</exception>
    /// <exception cref="KernelBugException">Error model: broken invariant. Called from inside a notifier callback; nothing changes.</exception>
    /// <remarks>If invalidations are in progress, sleeps until none is (the kernel's register takes the mmap lock
    /// for writing and every reverse-map lock, which keeps invalidations out), so that the new notifier sees
    /// only complete start/end pairs. Do not call it from a thread that is between a start and an end.</remarks>
    public MmuNotifier Register(IMmuNotifierOps ops)
    {
        ArgumentNullException.ThrowIfNull(ops);
        if (s_callbackDepth != 0)
        {
            MirroringThrowHelper.ThrowFromCallback("Register");
        }

        var notifier = new MmuNotifier(this, ops);
        lock (_lock)
        {
            if (_released || Mm is { IsAlive: false })
            {
                MirroringThrowHelper.ThrowReleased("Register", Mm);
            }

            if (_openRanges != 0)
            {
                _waiters++;
                try
                {
                    while (_openRanges != 0)
                    {
                        Monitor.Wait(_lock);
                    }
                }
                finally
                {
                    _waiters--;
                }
            }

            if (_released || Mm is { IsAlive: false })
            {
                MirroringThrowHelper.ThrowReleased("Register", Mm);
            }

            MmuNotifier[] old = _notifiers;
            var updated = new MmuNotifier[old.Length + 1];
            updated[0] = notifier;
            old.CopyTo(updated, 1);
            Volatile.Write(ref _notifiers, updated);
        }

        return notifier;
    }

    /// <summary>
    /// Unregisters a classic notifier (<c>mmu_notifier_unregister</c>). If the address space has not delivered
    /// <see cref="IMmuNotifierOps.Release"/> to it yet, this call does, as the kernel's unregister does. When it
    /// returns, no callback of the notifier is running on any thread and none will run again.
    /// </summary>
    /// <param name="notifier">A registration from <see cref="Register"/> on this address space.</param>
    /// <exception cref="ArgumentNullException"><paramref name="notifier"/> is null.</exception>
    /// <exception cref="KernelBugException">Error model: broken invariant. Called from inside a notifier callback; the notifier belongs to another
    /// address space; or it was already unregistered. Nothing changes.</exception>
    /// <remarks>Works after <see cref="Release"/> too. The caller must not hold a lock that a callback takes: the
    /// call waits for running callbacks to finish.</remarks>
    public void Unregister(MmuNotifier notifier)
    {
        ArgumentNullException.ThrowIfNull(notifier);
        if (!ReferenceEquals(notifier.Subscriptions, this))
        {
            MirroringThrowHelper.ThrowForeign("notifier");
        }

        if (s_callbackDepth != 0)
        {
            MirroringThrowHelper.ThrowFromCallback("Unregister");
        }

        lock (_lock)
        {
            if (notifier._unregistered)
            {
                MirroringThrowHelper.ThrowAlreadyUnregistered();
            }

            notifier._unregistered = true;
        }

        try
        {
            if (notifier.TryClaimRelease())
            {
                s_callbackDepth++;
                int phase = _srcu.ReadLock();
                try
                {
                    notifier.Ops.Release();
                }
                finally
                {
                    _srcu.ReadUnlock(phase);
                    s_callbackDepth--;
                }
            }
        }
        finally
        {
            lock (_lock)
            {
                MmuNotifier[] old = _notifiers;
                int index = Array.IndexOf(old, notifier);
                if (index >= 0)
                {
                    MmuNotifier[] updated = old.Length == 1 ? [] : new MmuNotifier[old.Length - 1];
                    Array.Copy(old, 0, updated, 0, index);
                    Array.Copy(old, index + 1, updated, index, old.Length - index - 1);
                    Volatile.Write(ref _notifiers, updated);
                }
            }

            _srcu.Synchronize();
        }
    }
}
