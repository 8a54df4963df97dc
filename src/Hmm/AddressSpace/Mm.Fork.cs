
namespace Hmm;

// fork: the child gets a copy of every area but DontCopy ones. Private memory becomes copy-on-write: each
// mapped page gains a reference and a mapcount for the child, and both entries lose write access (announced to
// the parent's notifiers as a per-page protection change first). Shared areas are not copied entry by entry: the
// child refaults them from the same file. A device-exclusive entry is restored first, as the kernel does. A pinned
// exclusive anonymous page is copied for the child at once, so the pin keeps seeing the parent's writes.
public sealed partial class Mm
{
    /// <summary>Creates a child address space that shares this one's memory copy-on-write (<c>fork</c>, <c>dup_mmap</c>).</summary>
    /// <param name="name">The child's name.</param>
    /// <returns>The child, alive with one user reference.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    /// <exception cref="HmmException">
    /// Error model: invalid state or no memory, with the kernel's errno. <see cref="Errno.ESRCH"/>: exited; <see cref="Errno.ENOMEM"/>: no memory to copy a pinned page. After ENOMEM the
    /// half-built child is torn down; the parent's contents are unchanged, though pages it shared with the child may
    /// stay write-protected until its next write (as after a failed fork in the kernel).
    /// </exception>
    public Mm Fork(string name = "child")
    {
        ArgumentNullException.ThrowIfNull(name);
        var child = new Mm(Memory, name);
        using MmapLockGuard guard = MmapWriteLock();
        try
        {
            foreach (Vma vma in _vmas.Snapshot())
            {
                if ((vma.Flags & VmFlags.DontCopy) != 0)
                {
                    continue;
                }

                CloneIntoChild(child, vma);
                if (!vma.IsShared)
                {
                    CopyPrivateEntries(child, vma);
                }
                else if (vma.IsSpecial)
                {
                    // Nothing can refault a driver's area (vma_needs_copy): the child gets its entries as they are.
                    CopySharedEntriesUnsynchronized(child, vma);
                }
            }
        }
        catch (HmmException)
        {
            child.Put();
            throw;
        }

        Log.Forked(Logger, Name, name, child._vmas.Count);
        return child;
    }

    private void CloneIntoChild(Mm child, Vma vma)
    {
        var copy = new Vma(child, vma.Start, vma.End, vma.Flags, vma.File, vma.PgOff, anonVma: null);
        if (!vma.IsShared)
        {
            // Private memory, anonymous or file-backed (whose copied-on-write pages are anonymous too): the
            // child joins every anon_vma of the parent's area, so the rmap of a shared page finds both.
            copy.LinkAnonVmasOf(vma);
            copy.AttachNewAnonVma(Memory);
        }

        vma.File?.AddMapping(copy);

        child._vmas.Insert(copy);
    }

    private void CopyPrivateEntries(Mm child, Vma vma)
    {
        var range = new MmuNotifierRange(vma.Start, vma.End, MmuNotifierEvent.ProtectionPage);
        InvalidateRangeStart(range);
        try
        {
            CopyPrivateEntriesUnsynchronized(child, vma);
        }
        finally
        {
            InvalidateRangeEnd(range);
        }
    }

    private void CopyPrivateEntriesUnsynchronized(Mm child, Vma vma)
    {
        for (ulong address = vma.Start; address < vma.End; address += PageSize.Bytes)
        {
            PteTable? table = _pageTable.Find(address);
            if (table is null)
            {
                address = _pageTable.NextTableAddress(address) - PageSize.Bytes;
                continue;
            }

            int index = PageTable.PteIndex(address);
            if (table.Read(index).Kind == PteKind.DeviceExclusive)
            {
                RestoreExclusive(table, index, address, table.Read(index));
            }

            // An empty entry stays empty under the mmap write lock (only faults fill entries), so it needs no child table.
            if (table.Read(index).IsNone)
            {
                continue;
            }

            // Both PTE locks are held across the copy (as copy_pte_range holds both), so a reverse-map walk that
            // rewrites the parent's entry (a migration finishing) also finds the child's copy, never a stale one.
            PteTable childTable = child._pageTable.FindOrAllocate(address);
            lock (table.Lock)
            lock (childTable.Lock)
            {
                Pte pte = table.Read(index);
                if (pte.IsNone)
                {
                    continue;
                }

                Pte childPte;
                if (pte.Kind == PteKind.Migration)
                {
                    // Shared now: the page the migration installs must not be reused as exclusive by either process.
                    Interlocked.And(ref Memory.Frame(pte.Pfn)._flags, ~(ulong)PageFlags.AnonExclusive);
                    childPte = pte.WriteProtected();
                    table.SetUnsynchronized(index, childPte);
                }
                else if (IsPinnedExclusiveAnon(pte))
                {
                    // A pinned page must stay the parent's (a device may be DMA-ing into it), so the child
                    // gets its own copy now instead of sharing it copy-on-write (the kernel's copy_present_page).
                    if (!TryAllocateAnonPage(child._vmas.Find(address)!, address, pte.Pfn, out Pfn copy))
                    {
                        ThrowHelper.ThrowHmm(Errno.ENOMEM, $"fork: no memory to copy the pinned page at 0x{address:x}.");
                    }

                    childPte = Pte.Present(copy, pte.IsWritable, dirty: true);
                }
                else
                {
                    if (HoldsPage(pte))
                    {
                        ref PageFrame frame = ref Memory.Frame(pte.Pfn);
                        Memory.GetPage(pte.Pfn);
                        Interlocked.Increment(ref frame._mapCount);
                        Interlocked.And(ref frame._flags, ~(ulong)PageFlags.AnonExclusive);
                    }

                    childPte = pte.WriteProtected();
                    table.SetUnsynchronized(index, childPte);
                }

                childTable.SetUnsynchronized(index, childPte);
            }
        }
    }

    /// <summary>Copies the entries of a shared driver area: inserted pages gain a reference and a mapcount, special entries nothing; nothing is write-protected.</summary>
    private void CopySharedEntriesUnsynchronized(Mm child, Vma vma)
    {
        for (ulong address = vma.Start; address < vma.End; address += PageSize.Bytes)
        {
            PteTable? table = _pageTable.Find(address);
            if (table is null)
            {
                address = _pageTable.NextTableAddress(address) - PageSize.Bytes;
                continue;
            }

            int index = PageTable.PteIndex(address);
            Pte pte;
            lock (table.Lock)
            {
                pte = table.Read(index);
                if (pte.IsNone)
                {
                    continue;
                }

                if (HoldsPage(pte))
                {
                    Memory.GetPage(pte.Pfn);
                    Interlocked.Increment(ref Memory.Frame(pte.Pfn)._mapCount);
                }
            }

            PteTable childTable = child._pageTable.FindOrAllocate(address);
            lock (childTable.Lock)
            {
                childTable.SetUnsynchronized(index, pte);
            }
        }
    }

    private bool IsPinnedExclusiveAnon(Pte pte)
    {
        // A special entry may name a frame without a struct page; it holds no page to pin either.
        if (!pte.IsPresent || !HoldsPage(pte))
        {
            return false;
        }

        ref readonly PageFrame frame = ref Memory.Page(pte.Pfn);
        const PageFlags exclusiveAnon = PageFlags.Anon | PageFlags.AnonExclusive;
        return (frame.Flags & exclusiveAnon) == exclusiveAnon && frame.RefCount >= PinCountingBias;
    }
}
