
namespace Hmm;

/// <summary>
/// What a driver supplies for an interval subscription (<c>struct mmu_interval_notifier_ops</c>): the callback
/// the address space runs when a range that intersects the subscription is about to change.
/// </summary>
public interface IMmuIntervalNotifierOps
{
    /// <summary>
    /// The CPU page tables of <paramref name="range"/> are about to change (<c>ops->invalidate</c>). Called for
    /// every subscription whose interval intersects <c>[range.Start, range.End)</c>, possibly on several threads
    /// at once for different or nested ranges.
    /// </summary>
    /// <param name="subscription">The subscription being invalidated.</param>
    /// <param name="range">What changes and why; <see cref="MmuNotifierRange.Owner"/> lets a driver skip the
    /// <see cref="MmuNotifierEvent.Migrate"/> or <see cref="MmuNotifierEvent.Exclusive"/> events it caused itself.</param>
    /// <param name="currentSequence">The address space's current (odd) invalidation sequence, to pass to
    /// <see cref="MmuIntervalNotifier.SetSequence"/>.</param>
    /// <returns>
    /// True when done. False only when <see cref="MmuNotifierRange.Blockable"/> is false and the callback would
    /// have had to sleep (for example its lock was contended): the invalidation is then abandoned and the
    /// address space retries later. A false return for a blockable range is a driver bug; it is counted in
    /// <see cref="MmuNotifierSubscriptions.IgnoredBlockableFailures"/>, logged, and otherwise ignored.
    /// </returns>
    /// <remarks>
    /// <para>The contract, as in the kernel:</para>
    /// <list type="bullet">
    /// <item>Take the driver lock that also guards <see cref="MmuIntervalNotifier.ReadRetry"/> and call
    /// <see cref="MmuIntervalNotifier.SetSequence"/> with <paramref name="currentSequence"/> under it, every
    /// time, before returning true (a driver may skip it only for an event it filters out as its own).</item>
    /// <item>When the method returns true, the device must no longer use any mapping of the range: the device
    /// page-table update and its TLB flush are complete.</item>
    /// <item>Sleep (wait on locks, wait for the device) only when <see cref="MmuNotifierRange.Blockable"/> is
    /// true.</item>
    /// <item>Do not call <see cref="MmuNotifierSubscriptions.Remove"/>, <see cref="MmuIntervalNotifier.ReadBegin"/>,
    /// <see cref="MmuNotifierSubscriptions.Register"/> or <see cref="MmuNotifierSubscriptions.Unregister"/> from
    /// here: they wait for invalidations to end, so in the kernel they deadlock; here they throw
    /// <see cref="KernelBugException"/>.</item>
    /// <item>Do not throw. If the method does throw, the invalidation is ended without calling the remaining
    /// subscribers and the exception propagates to the code that changed the page tables.</item>
    /// </list>
    /// </remarks>
    bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence);
}
