using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// Device-exclusive (atomic) access to one anonymous page (<c>make_device_exclusive</c>, <c>mm/rmap.c</c>): the CPU
/// mapping is replaced by a device-exclusive entry, so a device can operate on the page atomically until the next
/// CPU access, which notifies the device, restores the mapping and proceeds.
/// </summary>
/// <remarks>
/// The entry keeps the page's mapcount and reference, as a present entry does. fork restores it first (the child
/// shares the page copy-on-write), munmap drops it with the page, mprotect makes it read-only, and migration does not
/// collect it. Other references, such as earlier pins, are not revoked, as in the kernel.
/// </remarks>
public static class DeviceExclusive
{
    private const int MaxAttempts = 10_000;

    /// <summary>
    /// Makes the page at <paramref name="address"/> device-exclusive (<c>make_device_exclusive</c>). The page is first
    /// write-faulted in (copy-on-write broken) as GUP with <c>FOLL_WRITE</c> would; the interval notifiers then see a
    /// <see cref="MmuNotifierEvent.Exclusive"/> invalidation with <see cref="MmuNotifierRange.Owner"/> =
    /// <paramref name="owner"/>, and the entry is replaced. On success the page comes back locked and referenced: map it
    /// in the device, then <see cref="PhysicalMemory.UnlockPage"/> and <see cref="PhysicalMemory.PutPage"/> it.
    /// </summary>
    /// <param name="mm">The address space; the caller holds its mmap lock.</param>
    /// <param name="address">The page, page aligned.</param>
    /// <param name="owner">The requesting driver's token, so its notifier can tell its own event.</param>
    /// <param name="page">The page, locked and referenced, when the call returns 0.</param>
    /// <returns>
    /// 0; or <see cref="Errno.EFAULT"/> (no writable area, or the write fault failed), <see cref="Errno.ENOMEM"/> (out of
    /// memory faulting it in), <see cref="Errno.EOPNOTSUPP"/> (not an anonymous page, such as a shared file page). No
    /// reference or lock is held after an error; the write fault may have run, as GUP's would.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="mm"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: <paramref name="address"/> is not page aligned or beyond user space; nothing changes.</exception>
    /// <exception cref="KernelBugException">The mmap lock is not held.</exception>
    public static Errno Make(Mm mm, ulong address, object? owner, out Pfn page)
    {
        ArgumentNullException.ThrowIfNull(mm);
        if (!PageSize.IsAligned(address) || address >= Mm.TaskSize)
        {
            ThrowAddress(address);
        }

        mm.AssertMmapLocked();
        page = default;
        Vma? vma = mm.Vmas.Find(address);
        if (vma is null || (vma.Flags & VmFlags.Write) == 0 || (vma.Flags & (VmFlags.Io | VmFlags.PfnMap)) != 0)
        {
            return Errno.EFAULT;
        }

        PhysicalMemory memory = mm.Memory;
        for (int attempt = 0; attempt < MaxAttempts; attempt++)
        {
            Pfn candidate = default;
            PteTable? table = mm.PageTable.Find(address);
            int index = PageTable.PteIndex(address);
            if (table is not null)
            {
                lock (table.Lock)
                {
                    Pte pte = table.Read(index);
                    if (pte.IsPresent && pte.IsWritable)
                    {
                        candidate = pte.Pfn;
                        memory.GetPage(candidate);
                    }
                }
            }

            if (candidate == default)
            {
                VmFaultResult result = mm.HandleMmFault(vma, address, FaultFlags.Write | FaultFlags.Remote);
                if (result != VmFaultResult.None)
                {
                    return (result & VmFaultResult.Oom) != 0 ? Errno.ENOMEM : Errno.EFAULT;
                }

                continue;
            }

            if ((memory.Page(candidate).Flags & PageFlags.Anon) == 0)
            {
                memory.PutPage(candidate);
                return Errno.EOPNOTSUPP;
            }

            memory.LockPage(candidate);
            if (TryReplace(mm, table!, index, address, candidate, owner))
            {
                page = candidate;
                return 0;
            }

            // The entry changed while the page lock was taken: start over, as the kernel does.
            memory.UnlockPage(candidate);
            memory.PutPage(candidate);
        }

        ThrowNoProgress(address, mm);
        return Errno.EFAULT;
    }

    private static bool TryReplace(Mm mm, PteTable table, int index, ulong address, Pfn page, object? owner)
    {
        var range = new MmuNotifierRange(address, address + PageSize.Bytes, MmuNotifierEvent.Exclusive, Owner: owner);
        mm.InvalidateRangeStart(range);
        try
        {
            lock (table.Lock)
            {
                Pte pte = table.Read(index);
                if (!pte.IsPresent || !pte.IsWritable || pte.Pfn != page)
                {
                    return false;
                }

                if (pte.IsDirty)
                {
                    Interlocked.Or(ref mm.Memory.Frame(page)._flags, (ulong)PageFlags.Dirty);
                }

                table.SetUnsynchronized(index, Pte.Software(PteKind.DeviceExclusive, page, writable: true));
                return true;
            }
        }
        finally
        {
            mm.InvalidateRangeEnd(range);
        }
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowAddress(ulong address) =>
        throw new HmmException(Errno.EINVAL, $"make_device_exclusive: address 0x{address:x} must be page aligned and inside user space.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNoProgress(ulong address, Mm mm) =>
        throw new KernelBugException($"make_device_exclusive at 0x{address:x} in '{mm.Name}' made no progress after {MaxAttempts} attempts.");
}
