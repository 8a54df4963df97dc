
namespace Hmm;

/// <summary>
/// The callbacks of a classic, whole-address-space notifier (<c>struct mmu_notifier_ops</c>, the parts an HMM
/// driver can use). Unlike an interval subscription, a classic notifier hears about every invalidation of the
/// address space, whatever the range. Registered with <see cref="MmuNotifierSubscriptions.Register"/>.
/// </summary>
public interface IMmuNotifierOps
{
    /// <summary>
    /// <c>[range.Start, range.End)</c> is about to change (<c>invalidate_range_start</c>). Runs after the interval
    /// subscriptions' callbacks for the same range.
    /// </summary>
    /// <param name="range">What changes and why.</param>
    /// <returns>
    /// True when done. False only when <see cref="MmuNotifierRange.Blockable"/> is false and the callback would
    /// have had to sleep (<c>-EAGAIN</c>). The invalidation is then abandoned: the notifiers that already started
    /// get <see cref="InvalidateRangeEnd"/> at once, this one and any after it get nothing. A false return for a
    /// blockable range is a driver bug, counted and logged but otherwise ignored (the range is treated as
    /// started, so <see cref="InvalidateRangeEnd"/> follows).
    /// </returns>
    /// <remarks>Sleep only for a blockable range. Do not call <see cref="MmuNotifierSubscriptions.Unregister"/>,
    /// <see cref="MmuNotifierSubscriptions.Remove"/> or <see cref="MmuIntervalNotifier.ReadBegin"/> from here
    /// (<see cref="KernelBugException"/>).</remarks>
    bool InvalidateRangeStart(in MmuNotifierRange range);

    /// <summary>
    /// The change of <paramref name="range"/> is complete (<c>invalidate_range_end</c>). Called once for each
    /// <see cref="InvalidateRangeStart"/> that returned true (or returned false for a blockable range), with the
    /// same range, as long as the notifier is still registered.
    /// </summary>
    /// <param name="range">The range passed to the matching start.</param>
    void InvalidateRangeEnd(in MmuNotifierRange range);

    /// <summary>
    /// The address space is going away, or this notifier is being unregistered, whichever comes first
    /// (<c>release</c>): drop every device mapping of the address space and establish no new one. Called exactly
    /// once per registration.
    /// </summary>
    void Release();
}
