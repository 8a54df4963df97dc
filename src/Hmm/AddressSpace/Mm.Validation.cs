using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Hmm;

// Throw sites of the address space's argument checks, kept out of line (the call site passes values; the message
// is built here) so that the checked entry points stay small.
public sealed partial class Mm
{
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowForeignArea(Vma vma) =>
        throw new HmmException(Errno.EINVAL, $"Area {vma} belongs to address space '{vma.Mm.Name}', not to '{Name}'.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowStaleArea(Vma vma, ulong address) =>
        throw new HmmException(Errno.EFAULT, vma.Contains(address)
            ? $"Area {vma} is no longer an area of '{Name}' at 0x{address:x} (unmapped, split or moved)."
            : $"Address 0x{address:x} is outside area {vma} of '{Name}'.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowForeignFile(SimFile file) =>
        throw new HmmException(Errno.EINVAL, $"File '{file.Name}' has its page cache on another PhysicalMemory than address space '{Name}'.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowDeadFile(SimFile file) =>
        throw new HmmException(Errno.EINVAL, $"File '{file.Name}' is anonymous shared memory whose last mapping is gone; it cannot be mapped again.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowUnpinnedPage(Pfn pfn, int pins) =>
        throw new KernelBugException($"unpin_user_pages: {pfn} does not hold the references of {pins} pin(s).");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowBadGupRange(ulong start, int pages) =>
        throw new HmmException(Errno.EINVAL, $"GUP of {pages} pages at 0x{start:x}: start must be page aligned and the range inside user space.");
}
