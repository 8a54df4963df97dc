namespace Hmm;

/// <summary>
/// An invalidation of <c>[Start, End)</c> of one address space (<c>struct mmu_notifier_range</c>).
/// </summary>
/// <param name="Start">The first virtual address, page aligned.</param>
/// <param name="End">One past the last virtual address, page aligned; <see cref="ulong.MaxValue"/> means "to the top of
/// the address space", as in the kernel's whole-space ranges (the exit's <see cref="MmuNotifierEvent.Release"/> and
/// <see cref="MmuNotifierEvent.Unmap"/> ranges are <c>[0, ulong.MaxValue)</c>).</param>
/// <param name="Event">Why the range is invalidated.</param>
/// <param name="Blockable">Whether callbacks may sleep (<c>MMU_NOTIFIER_RANGE_BLOCKABLE</c>).</param>
/// <param name="Owner">For <see cref="MmuNotifierEvent.Migrate"/> and <see cref="MmuNotifierEvent.Exclusive"/>: who caused it, so a driver can skip its own.</param>
public readonly record struct MmuNotifierRange(ulong Start, ulong End, MmuNotifierEvent Event, bool Blockable = true, object? Owner = null);
