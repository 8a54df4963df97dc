using System.Diagnostics.CodeAnalysis;

namespace Hmm;

/// <summary>Throw sites of the Mirroring layer, kept out of line so that the calling methods stay small.</summary>
internal static class MirroringThrowHelper
{
    [DoesNotReturn]
    public static void ThrowInsertOverflow(ulong start, ulong length) =>
        ThrowHelper.ThrowHmm(Errno.EOVERFLOW, $"Interval of length 0x{length:x} at 0x{start:x} is empty or its end overflows.");

    [DoesNotReturn]
    public static void ThrowInsertUnaligned(ulong start, ulong length) =>
        ThrowHelper.ThrowHmm(Errno.EINVAL, $"Interval start 0x{start:x} and length 0x{length:x} must both be page aligned.");

    [DoesNotReturn]
    public static void ThrowInsertBeyondAddressSpace(ulong start, ulong length) =>
        ThrowHelper.ThrowHmm(Errno.EINVAL, $"Interval [0x{start:x}, +0x{length:x}) reaches beyond the 2^{MmuNotifierSubscriptions.VirtualAddressBits}-byte user address space.");

    [DoesNotReturn]
    public static void ThrowReleased(string operation) =>
        ThrowHelper.ThrowHmm(Errno.ENODEV, $"{operation} after the address space was released (it is exiting).");

    [DoesNotReturn]
    public static void ThrowFromCallback(string operation) =>
        ThrowHelper.ThrowBug($"{operation} called from inside an MMU notifier callback; it waits for invalidations to end, so it would deadlock.");

    [DoesNotReturn]
    public static void ThrowForeign(string what) =>
        ThrowHelper.ThrowBug($"The {what} belongs to another address space.");

    [DoesNotReturn]
    public static void ThrowAlreadyRemoved(MmuIntervalNotifier subscription) =>
        ThrowHelper.ThrowBug($"The {subscription} was already removed (or its removal is in progress).");

    [DoesNotReturn]
    public static void ThrowUseAfterRemove(MmuIntervalNotifier subscription) =>
        ThrowHelper.ThrowBug($"ReadBegin on the {subscription}, which was removed.");

    [DoesNotReturn]
    public static void ThrowAlreadyUnregistered() =>
        ThrowHelper.ThrowBug("The notifier was already unregistered.");

    [DoesNotReturn]
    public static void ThrowEmptyRange(in MmuNotifierRange range) =>
        ThrowHelper.ThrowBug($"Invalidation range [0x{range.Start:x}, 0x{range.End:x}) is empty or reversed.");

    [DoesNotReturn]
    public static void ThrowEndWithoutStart(in MmuNotifierRange range) =>
        ThrowHelper.ThrowBug($"InvalidateRangeEnd of [0x{range.Start:x}, 0x{range.End:x}) without a matching successful InvalidateRangeStart.");

    [DoesNotReturn]
    public static void ThrowEvenSequence(ulong sequence) =>
        ThrowHelper.ThrowBug($"SetSequence({sequence}): the sequence an invalidate callback receives is always odd.");
}
