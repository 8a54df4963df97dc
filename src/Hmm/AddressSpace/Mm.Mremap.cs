
namespace Hmm;

// mremap: shrink, grow in place, or move the page-table entries to a new area. Moving keeps each page's index
// valid because the new area keeps the old pgoff, so the reverse map still finds the pages.
public sealed partial class Mm
{
    /// <summary>Resizes or moves a mapping (<c>mremap</c>). Every argument is checked before anything is unmapped.</summary>
    /// <param name="oldAddress">The start of the mapping to change, page aligned.</param>
    /// <param name="oldSize">Its size in bytes; the range must lie within one area. 0 (with <see cref="MremapFlags.MayMove"/>) maps the shared memory at <paramref name="oldAddress"/> a second time.</param>
    /// <param name="newSize">The size wanted.</param>
    /// <param name="flags"><see cref="MremapFlags.MayMove"/>, <see cref="MremapFlags.Fixed"/>, <see cref="MremapFlags.DontUnmap"/>.</param>
    /// <param name="newAddress">With <see cref="MremapFlags.Fixed"/>, where to move to.</param>
    /// <returns>The mapping's address afterwards.</returns>
    /// <exception cref="HmmException">
    /// Error model: invalid arguments, with the kernel's errno; nothing changes. <see cref="Errno.EINVAL"/>: unaligned
    /// addresses, a zero new size, a size whose rounding wraps, a new size above <see cref="TaskSize"/>, unknown flags,
    /// Fixed or DontUnmap without MayMove, DontUnmap with a size change, overlapping old and new ranges, an old size of 0
    /// on a private mapping or a driver's area, or DontUnmap on a non-expandable or PFN-map area; <see cref="Errno.EFAULT"/>:
    /// the old range is not within one area, growing (in place or by a move) a non-expandable or PFN-map area, or a
    /// Fixed duplicate (old size 0) whose new range covers the page it duplicates (unmapping the target would remove
    /// the source); <see cref="Errno.ENOMEM"/>: cannot grow in place without MayMove, or no room;
    /// <see cref="Errno.EPERM"/>: a Fixed new address below <see cref="MinimumAddress"/>; <see cref="Errno.ESRCH"/>: exited.
    /// </exception>
    public ulong Mremap(ulong oldAddress, ulong oldSize, ulong newSize, MremapFlags flags, ulong newAddress = 0)
    {
        bool mayMove = (flags & MremapFlags.MayMove) != 0;
        bool fixedAddress = (flags & MremapFlags.Fixed) != 0;
        bool dontUnmap = (flags & MremapFlags.DontUnmap) != 0;
        bool wraps = RoundUpToPage(oldSize) == 0 && oldSize != 0;
        oldSize = RoundUpToPage(oldSize);
        newSize = RoundUpToPage(newSize);
        if ((flags & ~(MremapFlags.MayMove | MremapFlags.Fixed | MremapFlags.DontUnmap)) != 0
            || !PageSize.IsAligned(oldAddress) || newSize == 0 || wraps || newSize > TaskSize
            || ((fixedAddress || dontUnmap) && !mayMove) || (dontUnmap && oldSize != newSize)
            || (fixedAddress && !PageSize.IsAligned(newAddress)))
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"mremap(0x{oldAddress:x}, {oldSize}, {newSize}, {flags}, 0x{newAddress:x}): invalid arguments.");
        }

        if (fixedAddress && newAddress > TaskSize - newSize)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, "mremap: the new range extends beyond the user address space.");
        }

        // The kernel finds this in get_unmapped_area (security_mmap_addr), after it has already unmapped the
        // target; the simulator checks first, so that the error changes nothing.
        if (fixedAddress && newAddress < MinimumAddress)
        {
            ThrowHelper.ThrowHmm(Errno.EPERM, $"mremap: the new address 0x{newAddress:x} is below the minimum mmap address 0x{MinimumAddress:x}.");
        }

        // Written so that a huge old size cannot wrap: newAddress < oldAddress + oldSize, and the reverse.
        if (fixedAddress && (newAddress < oldAddress || newAddress - oldAddress < oldSize) && oldAddress < newAddress + newSize)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, "mremap: the old and new ranges overlap.");
        }

        using MmapLockGuard guard = MmapWriteLock();
        Vma? vma = _vmas.Find(oldAddress);
        if (vma is null || oldSize > vma.End - oldAddress)
        {
            ThrowHelper.ThrowHmm(Errno.EFAULT, $"[0x{oldAddress:x}, +{oldSize}) is not within one mapping.");
        }

        if (oldSize == 0 && (!vma.IsShared || vma.File is null))
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"mremap with old size 0 duplicates shared memory, and {vma} is private or a driver's area.");
        }

        if (dontUnmap && (vma.Flags & (VmFlags.DontExpand | VmFlags.PfnMap)) != 0)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"MREMAP_DONTUNMAP cannot leave {vma} behind.");
        }

        if (!fixedAddress && newSize <= oldSize && !dontUnmap)
        {
            if (newSize < oldSize)
            {
                UnmapUnsynchronized(oldAddress + newSize, oldAddress + oldSize);
            }

            return oldAddress;
        }

        if (newSize > oldSize && (vma.Flags & (VmFlags.DontExpand | VmFlags.PfnMap)) != 0)
        {
            ThrowHelper.ThrowHmm(Errno.EFAULT, $"{vma} cannot be expanded, in place or by a move.");
        }

        ulong growEnd = oldAddress + newSize;
        if (!fixedAddress && !dontUnmap && oldAddress + oldSize == vma.End && growEnd <= TaskSize && growEnd > vma.End && !_vmas.Overlaps(vma.End, growEnd))
        {
            vma.End = growEnd;
            return oldAddress;
        }

        if (!mayMove)
        {
            ThrowHelper.ThrowHmm(Errno.ENOMEM, $"Cannot grow [0x{oldAddress:x}, +{oldSize}) in place and MREMAP_MAYMOVE is not set.");
        }

        // A duplicate's source is one page that the overlap check above cannot see (its old range is empty): a
        // fixed target over it would unmap it before it is duplicated. The kernel unmaps and then finds no area
        // (EFAULT); the simulator refuses first, so that the error changes nothing.
        if (fixedAddress && oldSize == 0 && oldAddress >= newAddress && oldAddress - newAddress < newSize)
        {
            ThrowHelper.ThrowHmm(Errno.EFAULT, $"mremap: the fixed target [0x{newAddress:x}, +{newSize}) covers the page 0x{oldAddress:x} it would duplicate.");
        }

        ulong target = fixedAddress ? newAddress : FindFreeArea(0, newSize);
        if (fixedAddress)
        {
            UnmapUnsynchronized(newAddress, newAddress + newSize);
        }

        return oldSize == 0 ? DuplicateUnsynchronized(oldAddress, target, newSize) : MoveUnsynchronized(oldAddress, oldSize, target, newSize, dontUnmap);
    }

    /// <summary>
    /// mremap with old size 0 (the kernel's "duplicate shm area" case): a second area over the same shared memory,
    /// starting at the page <paramref name="oldAddress"/> maps. Nothing is moved or unmapped.
    /// </summary>
    private ulong DuplicateUnsynchronized(ulong oldAddress, ulong target, ulong newSize)
    {
        // Unmapping a fixed target may have split the source area: look it up again.
        Vma source = _vmas.Find(oldAddress)!;
        var vma = new Vma(this, target, target + newSize, source.Flags, source.File, source.PageIndex(oldAddress), anonVma: null);
        vma.File!.AddMapping(vma);
        _vmas.Insert(vma);
        return target;
    }

    private ulong MoveUnsynchronized(ulong oldAddress, ulong oldSize, ulong target, ulong newSize, bool dontUnmap)
    {
        ulong moved = Math.Min(oldSize, newSize);
        List<Vma> source = IsolateUnsynchronized(oldAddress, oldAddress + oldSize);
        Vma old = source[0];
        var vma = new Vma(this, target, target + newSize, old.Flags, old.File, old.PgOff, old.AnonVma);
        vma.LinkAnonVmasOf(old);

        vma.File?.AddMapping(vma);
        _vmas.Insert(vma);

        var range = new MmuNotifierRange(oldAddress, oldAddress + oldSize, MmuNotifierEvent.Unmap);
        InvalidateRangeStart(range);

        // The rmap locks (take_rmap_locks): a reverse-map walk that took its snapshot before the new area was linked
        // finishes before any entry moves; one that starts later finds the new area.
        AnonVma[] rmapLocked = AnonVma.EnterRmapWrite(old.AnonVmaChain);
        try
        {
            for (ulong offset = 0; offset < moved;)
            {
                ulong from = oldAddress + offset;
                if (_pageTable.Find(from) is null)
                {
                    offset = Math.Min(moved, _pageTable.NextTableAddress(from) - oldAddress);
                    continue;
                }

                MoveEntryUnsynchronized(from, target + offset);
                offset += PageSize.Bytes;
            }
        }
        finally
        {
            AnonVma.ExitRmapWrite(rmapLocked);
        }

        if (dontUnmap)
        {
            // The old area stays, empty: anonymous memory refaults as new zero pages, file memory from the file,
            // as with MREMAP_DONTUNMAP. Its anon_vma links went with the pages; it starts a fresh one.
            if (!old.IsShared)
            {
                old.UnlinkAnonVmas();
                old.AttachNewAnonVma(Memory);
                if (old.IsAnonymous)
                {
                    old.PgOff = oldAddress >> PageSize.Shift;
                }
            }
        }
        else
        {
            ZapRangeUnsynchronized(old, old.Start, old.End);
            DetachUnsynchronized(old);
        }

        _pageTable.FreeEmptyTables(oldAddress, oldAddress + oldSize);
        InvalidateRangeEnd(range);
        return target;
    }

    /// <summary>Moves one entry, with whatever reference and mapcount it holds (<c>move_ptes</c>).</summary>
    private void MoveEntryUnsynchronized(ulong from, ulong to)
    {
        PteTable? source = _pageTable.Find(from);
        int index = PageTable.PteIndex(from);
        if (source is null || source.Read(index).IsNone)
        {
            return;
        }

        // Both PTE locks are held across the move (as move_ptes holds both), so a walker that takes them, like
        // the rmap's try_to_unmap, finds the entry at one address or the other, never in between. No other path
        // holds two PTE locks of one address space, and the tables may be the same (the lock is reentrant).
        PteTable destination = _pageTable.FindOrAllocate(to);
        lock (source.Lock)
        {
            Pte pte = source.Read(index);
            if (pte.IsNone)
            {
                return;
            }

            lock (destination.Lock)
            {
                source.SetUnsynchronized(index, default);
                destination.SetUnsynchronized(PageTable.PteIndex(to), pte);
            }
        }
    }
}
