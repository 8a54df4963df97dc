
namespace Hmm;

/// <summary>
/// The reverse map (<c>mm/rmap.c</c>): from a page to every entry that maps it, through the page's mapping
/// (an anon_vma or a file) and index. An anonymous page is found in every area linked to its anon_vma (the
/// forking parent and its children); a file page in every area mapping the file.
/// </summary>
/// <remarks>Concurrency model: the walk takes no mmap lock (the kernel's rmap walk does not either); it holds an
/// anonymous page's anon_vma rmap lock shared for its whole length, which mremap holds exclusive while moving entries,
/// so an entry being moved is found at one address or the other; each candidate entry is checked under its PTE lock,
/// so an area that is concurrently unmapped is simply not found.</remarks>
public static class Rmap
{
    /// <summary>Every entry that maps the page now (present, device-private or device-exclusive).</summary>
    /// <param name="memory">The memory holding the page.</param>
    /// <param name="pfn">The page.</param>
    /// <returns>The mappings, possibly empty.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page.</exception>
    public static IReadOnlyList<PageMapping> FindMappings(PhysicalMemory memory, Pfn pfn)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var found = new List<PageMapping>();
        AnonVma? locked = LockAnonVmaRead(memory, pfn);
        try
        {
            foreach ((Vma vma, ulong address) in Candidates(memory, pfn))
            {
                Pte pte = vma.Mm.ReadPte(address);
                if (Mm.HoldsPage(pte) && pte.Pfn == pfn)
                {
                    found.Add(new PageMapping(vma.Mm, address, pte));
                }
            }
        }
        finally
        {
            locked?.ExitRmapRead();
        }

        return found;
    }

    /// <summary>
    /// Removes every mapping of the page (<c>try_to_unmap</c>): each entry is cleared after its address space's
    /// notifiers were told (<see cref="MmuNotifierEvent.Clear"/>), dropping its mapcount and reference. The caller
    /// holds the page lock and a reference of its own.
    /// </summary>
    /// <returns>How many entries were removed.</returns>
    internal static int TryToUnmap(PhysicalMemory memory, Pfn pfn)
    {
        AnonVma? locked = LockAnonVmaRead(memory, pfn);
        try
        {
            return TryToUnmapLocked(memory, pfn);
        }
        finally
        {
            locked?.ExitRmapRead();
        }
    }

    /// <summary>
    /// Takes the rmap lock of an anonymous page's anon_vma shared (<c>folio_lock_anon_vma_read</c>), for the length of a
    /// walk over <see cref="Candidates"/>; null for a page that is not anonymous.
    /// </summary>
    internal static AnonVma? LockAnonVmaRead(PhysicalMemory memory, Pfn pfn)
    {
        ref readonly PageFrame frame = ref memory.Page(pfn);
        if ((frame.Flags & PageFlags.Anon) == 0 || memory.Mappings.Find(frame.Mapping) is not AnonVma anonVma)
        {
            return null;
        }

        anonVma.EnterRmapRead();
        return anonVma;
    }

    private static int TryToUnmapLocked(PhysicalMemory memory, Pfn pfn)
    {
        int removed = 0;
        foreach ((Vma vma, ulong address) in Candidates(memory, pfn))
        {
            Mm mm = vma.Mm;
            PteTable? table = mm.PageTable.Find(address);
            if (table is null)
            {
                continue;
            }

            var range = new MmuNotifierRange(address, address + PageSize.Bytes, MmuNotifierEvent.Clear);
            mm.InvalidateRangeStart(range);
            bool cleared = false;
            lock (table.Lock)
            {
                int index = PageTable.PteIndex(address);
                Pte pte = table.Read(index);
                if (Mm.HoldsPage(pte) && pte.Pfn == pfn)
                {
                    table.SetUnsynchronized(index, default);
                    Interlocked.Decrement(ref memory.Frame(pfn)._mapCount);
                    cleared = true;
                }
            }

            mm.InvalidateRangeEnd(range);
            if (cleared)
            {
                memory.PutPage(pfn);
                removed++;
            }
        }

        return removed;
    }

    /// <summary>Every (area, address) where the page may be mapped, from its mapping and index; entries still need checking under their PTE lock.</summary>
    internal static List<(Vma Vma, ulong Address)> Candidates(PhysicalMemory memory, Pfn pfn)
    {
        ref readonly PageFrame frame = ref memory.Page(pfn);
        ulong index = frame.Index;
        Vma[] vmas = memory.Mappings.Find(frame.Mapping) switch
        {
            AnonVma anonVma when (frame.Flags & PageFlags.Anon) != 0 => anonVma.Snapshot(),
            SimFile file when (frame.Flags & PageFlags.Anon) == 0 => file.Mappings(),
            _ => [],
        };

        var candidates = new List<(Vma, ulong)>(vmas.Length);
        foreach (Vma vma in vmas)
        {
            ulong pages = (vma.End - vma.Start) >> PageSize.Shift;
            if (index >= vma.PgOff && index - vma.PgOff < pages)
            {
                candidates.Add((vma, vma.Start + ((index - vma.PgOff) << PageSize.Shift)));
            }
        }

        return candidates;
    }
}
