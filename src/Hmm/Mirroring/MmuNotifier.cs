namespace Hmm;

/// <summary>
/// One registration of a classic notifier on an address space (<c>struct mmu_notifier</c>): the handle that
/// <see cref="MmuNotifierSubscriptions.Register"/> returns and <see cref="MmuNotifierSubscriptions.Unregister"/>
/// takes.
/// </summary>
/// <remarks>
/// Concurrency model: <c>_released</c> flips once, by compare-and-swap, so <see cref="IMmuNotifierOps.Release"/>
/// runs exactly once even when the address space exits while the driver unregisters. <c>_unregistered</c> changes
/// under the owner's lock.
/// </remarks>
public sealed class MmuNotifier
{
    private int _released;
    internal bool _unregistered;

    internal MmuNotifier(MmuNotifierSubscriptions subscriptions, IMmuNotifierOps ops)
    {
        Subscriptions = subscriptions;
        Ops = ops;
    }

    /// <summary>The address space's notifier subscriptions this notifier is registered on: where to
    /// <see cref="MmuNotifierSubscriptions.Unregister"/> it, also after the address space has exited.</summary>
    public MmuNotifierSubscriptions Subscriptions { get; }

    /// <summary>The driver's callbacks.</summary>
    internal IMmuNotifierOps Ops { get; }

    /// <summary>Whether <see cref="IMmuNotifierOps.Release"/> has been called (or is being called).</summary>
    internal bool IsReleased => Volatile.Read(ref _released) != 0;

    /// <summary>Claims the one release callback; true for the single caller that must run it.</summary>
    internal bool TryClaimRelease() => Interlocked.Exchange(ref _released, 1) == 0;
}
