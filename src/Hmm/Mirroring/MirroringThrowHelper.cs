using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// Throw sites of the Mirroring layer. Call sites pass the values; each message is built here, in a method the
/// JIT never inlines, so that the hot callers (read-begin, invalidate start and end, <c>hmm_range_fault</c>)
/// carry no string formatting.
/// </summary>
internal static class MirroringThrowHelper
{
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowInsertOverflow(ulong start, ulong length) =>
        ThrowHelper.ThrowHmm(Errno.EOVERFLOW, $"Interval of length 0x{length:x} at 0x{start:x} is empty or its last address wraps past 0x{ulong.MaxValue:x}.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowReleased(string operation, Mm? mm) =>
        ThrowHelper.ThrowHmm(Errno.EINVAL, $"{operation} on address space '{mm?.Name ?? "(detached)"}', which has exited: its notifiers were released, so nothing can subscribe to it any more.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowFromCallback(string operation) =>
        ThrowHelper.ThrowBug($"{operation} called from inside an MMU notifier callback; it waits for invalidations to end, so it would deadlock.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowForeign(string what) =>
        ThrowHelper.ThrowBug($"The {what} belongs to another address space.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowAlreadyRemoved(MmuIntervalNotifier subscription) =>
        ThrowHelper.ThrowBug($"The {subscription} was already removed (or its removal is in progress).");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowUseAfterRemove(MmuIntervalNotifier subscription) =>
        ThrowHelper.ThrowBug($"ReadBegin on the {subscription}, which was removed.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowAlreadyUnregistered() =>
        ThrowHelper.ThrowBug("The notifier was already unregistered.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowEmptyRange(ulong start, ulong end) =>
        ThrowHelper.ThrowBug($"Invalidation range [0x{start:x}, 0x{end:x}) is empty or reversed.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowEndWithoutStart(ulong start, ulong end) =>
        ThrowHelper.ThrowBug($"InvalidateRangeEnd of [0x{start:x}, 0x{end:x}) without a matching successful InvalidateRangeStart.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowEvenSequence(ulong sequence) =>
        ThrowHelper.ThrowBug($"SetSequence({sequence}): the sequence an invalidate callback receives is always odd.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static T ThrowDetached<T>() =>
        throw new HmmException(Errno.EINVAL, "This subscription belongs to notifier subscriptions that are not attached to an address space.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowRangeWithoutNotifier() =>
        ThrowHelper.ThrowHmm(Errno.EINVAL, "An HMM range needs its interval notifier.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowBadRange(ulong start, ulong end) =>
        ThrowHelper.ThrowHmm(Errno.EINVAL, $"HMM range [0x{start:x}, 0x{end:x}) must be non-empty and page aligned.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowShortPfnArray(int length, ulong pages) =>
        ThrowHelper.ThrowHmm(Errno.EINVAL, $"The PFN array holds {length} entries; the range has {pages} pages.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowRangeTooLarge(ulong start, ulong end) =>
        ThrowHelper.ThrowHmm(Errno.EINVAL, $"HMM range [0x{start:x}, 0x{end:x}) has more pages than one PFN array can hold ({Array.MaxLength}).");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowExited(Mm mm) =>
        ThrowHelper.ThrowHmm(Errno.ESRCH, $"Address space '{mm.Name}' has exited.");
}
