using Hmm.Memory;

namespace Hmm.AddressSpace;

// fork: the child gets a copy of every area but DontCopy ones. Private memory becomes copy-on-write: each
// mapped page gains a reference and a mapcount for the child, and both entries lose write access (announced to
// the parent's notifiers as a per-page protection change first). Shared areas are not copied entry by entry: the
// child refaults them from the same file. A device-exclusive entry is restored first, as the kernel does.
public sealed partial class Mm
{
    /// <summary>Creates a child address space that shares this one's memory copy-on-write (<c>fork</c>, <c>dup_mmap</c>).</summary>
    /// <param name="name">The child's name.</param>
    /// <returns>The child, alive with one user reference.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.ESRCH"/>: exited.</exception>
    public Mm Fork(string name = "child")
    {
        ArgumentNullException.ThrowIfNull(name);
        var child = new Mm(Memory, name);
        using MmapLockGuard guard = MmapWriteLock();
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
        }

        return child;
    }

    private void CloneIntoChild(Mm child, Vma vma)
    {
        var copy = new Vma(child, vma.Start, vma.End, vma.Flags, vma.File, vma.PgOff, anonVma: null);
        if (!vma.IsShared)
        {
            // Private memory, anonymous or file-backed (whose copied-on-write pages are anonymous too): the
            // child joins every anon_vma of the parent's area, so the rmap of a shared page finds both.
            foreach (AnonVma anonVma in vma.AnonVmaChain)
            {
                copy.AnonVmaChain.Add(anonVma);
                anonVma.Link(copy);
            }

            var own = new AnonVma(Memory);
            copy.AnonVma = own;
            copy.AnonVmaChain.Add(own);
            own.Link(copy);
        }

        vma.File?.AddMapping(copy);

        child._vmas.Insert(copy);
    }

    private void CopyPrivateEntries(Mm child, Vma vma)
    {
        var range = new MmuNotifierRange(vma.Start, vma.End, MmuNotifierEvent.ProtectionPage);
        InvalidateRangeStart(range);
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

            Pte childPte;
            lock (table.Lock)
            {
                Pte pte = table.Read(index);
                if (pte.IsNone)
                {
                    continue;
                }

                if (pte.Kind == PteKind.Migration)
                {
                    childPte = pte.WriteProtected();
                    table.SetUnsynchronized(index, childPte);
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
            }

            PteTable childTable = child._pageTable.FindOrAllocate(address);
            lock (childTable.Lock)
            {
                childTable.SetUnsynchronized(index, childPte);
            }
        }

        InvalidateRangeEnd(range);
    }
}
