using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// Throw sites kept out of line so that the methods calling them stay small enough to inline. Call sites pass
/// values; the message is built here, so the hot path carries no string formatting (the dotnet/runtime pattern).
/// </summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowHmm(Errno error, string message) => throw CreateHmm(error, message);

    [DoesNotReturn]
    public static void ThrowBug(string message) => throw CreateBug(message);

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowNotPresent(Pfn pfn) => throw CreateHmm(Errno.EFAULT, $"{pfn} has no struct page (not RAM and not in a registered device range).");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowGetOfFreePage(Pfn pfn, int count) =>
        throw CreateBug(count == 1
            ? $"get_page on free page {pfn}: the caller holds no reference."
            : string.Create(CultureInfo.InvariantCulture, $"Taking {count} references on free page {pfn}: the caller holds no reference."));

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowPutBelowZero(Pfn pfn, int count) =>
        throw CreateBug(string.Create(CultureInfo.InvariantCulture, $"put_page below zero on {pfn}: dropping {count} reference(s) would leave it negative (more puts than gets)."));

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowBadPageState(Pfn pfn, PageFlags flags, int mapCount) =>
        throw CreateBug(string.Create(CultureInfo.InvariantCulture, $"Bad page state freeing {pfn}: mapcount {mapCount}, flags {flags}{((flags & PageFlags.Reserved) != 0 ? " (a reserved page never goes to the allocator)" : string.Empty)}."));

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowUnlockOfUnlockedPage(Pfn pfn) => throw CreateBug($"unlock_page on {pfn}, which is not locked.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowReservedPageData(Pfn pfn) =>
        throw CreateHmm(Errno.EPERM, $"{pfn} is a reserved page (frame 0 or the zero page): its data is read-only; use ReadPageData.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowNoPageData() =>
        throw CreateHmm(Errno.EOPNOTSUPP, "Page data is not stored: this memory runs in metadata-only mode.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowNoFreeRamPage(ulong ramPages) =>
        throw CreateHmm(Errno.ENOMEM, string.Create(CultureInfo.InvariantCulture, $"No free System RAM page ({ramPages} pages, all in use)."));

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowNotDevicePage(Pfn pfn) => throw CreateHmm(Errno.EINVAL, $"{pfn} is not a device page.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowLifetimePutBelowZero(long state, long count, long deadBit, long countMask) =>
        throw CreateBug(string.Create(CultureInfo.InvariantCulture, $"Lifetime reference put below zero or of the initial reference (count {state & countMask}, put {count}, dying {(state & deadBit) != 0})."));

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowLifetimeOverflow(long current, long count) =>
        throw CreateHmm(Errno.EOVERFLOW, string.Create(CultureInfo.InvariantCulture, $"Taking {count} lifetime references on top of {current} would overflow the count."));

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowCountOutOfRange(long count) =>
        throw new ArgumentOutOfRangeException(nameof(count), count, "The count must be at least 1.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowNotPagemapPage(Pfn pfn, DevPagemap pagemap) =>
        throw CreateHmm(Errno.EINVAL, string.Create(CultureInfo.InvariantCulture, $"{pfn} is not a page of pagemap {pagemap.Id} '{pagemap.Name}'."));

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowPagemapDying(DevPagemap pagemap) =>
        throw CreateHmm(Errno.ENODEV, string.Create(CultureInfo.InvariantCulture, $"Pagemap {pagemap.Id} '{pagemap.Name}' is {pagemap.State}: no device page may be initialised after teardown began."));

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowDevicePageBusy(Pfn pfn, int refCount) =>
        throw CreateHmm(Errno.EBUSY, string.Create(CultureInfo.InvariantCulture, $"{pfn} is in use (refcount {refCount}); only a free device page can be initialised."));

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowForeignMachine(string what, string whose, PhysicalMemory expected, PhysicalMemory actual) =>
        throw CreateHmm(Errno.EINVAL, string.Create(CultureInfo.InvariantCulture, $"{what} belongs to another machine (PhysicalMemory #{RuntimeHelpers.GetHashCode(actual):x}) than {whose} (PhysicalMemory #{RuntimeHelpers.GetHashCode(expected):x})."));

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static HmmException CreateHmm(Errno error, string message) => new(error, message);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static KernelBugException CreateBug(string message) => new(message);
}
