namespace Hmm;

/// <summary>
/// What the address-space layer calls around every change to its page tables: the notifier subscriptions of
/// one address space (<c>mm->notifier_subscriptions</c>). Implemented by the Mirroring layer, so the dependency
/// arrow points down: AddressSpace knows only this interface. Its members are implemented explicitly, so only the
/// address space can call them: a driver that could start an invalidation could block every reader.
/// </summary>
internal interface IMmNotifierChain
{
    /// <summary>
    /// Tells every overlapping subscriber that the range is about to change (<c>mmu_notifier_invalidate_range_start</c>).
    /// Returns false only for a non-blockable range that a subscriber could not handle without sleeping; the
    /// invalidation is then already ended internally and the caller must not call <see cref="InvalidateRangeEnd"/>.
    /// </summary>
    bool InvalidateRangeStart(in MmuNotifierRange range);

    /// <summary>The change is complete (<c>mmu_notifier_invalidate_range_end</c>).</summary>
    void InvalidateRangeEnd(in MmuNotifierRange range);

    /// <summary>The address space is exiting (<c>mmu_notifier_release</c>): every subscriber is told once. Classic
    /// notifiers hear nothing afterwards; interval subscriptions still get later invalidations (the exit's unmap).</summary>
    void Release();
}
