
namespace Hmm;

// get_user_pages / pin_user_pages: fault pages in and hold references on them. A pin adds the kernel's
// GUP_PIN_COUNTING_BIAS (1024) to the refcount, so that migration can tell a pinned page (refcount >= 1024)
// from one that is merely mapped, and refuse to move it. A device-private entry is never returned: the fault
// it takes migrates the page back to RAM first, as in the kernel, so device memory is never pinned. A read-only
// pin first unshares a page the process may share copy-on-write (FAULT_FLAG_UNSHARE), so that the pinned page
// stays the one the process writes to. A long-term pin of device-coherent memory first moves the page to RAM
// (coherent memory must stay evictable), through the migration layer's migrate_device_coherent_folio.
public sealed partial class Mm
{
    /// <summary>The references a pin adds (<c>GUP_PIN_COUNTING_BIAS</c>).</summary>
    public const int PinCountingBias = 1024;

    /// <summary>
    /// Faults in <c>pages.Length</c> pages from <paramref name="start"/> and takes one reference on each
    /// (<c>get_user_pages_unlocked</c>). Release each with <see cref="PhysicalMemory.PutPage"/>.
    /// </summary>
    /// <param name="start">The first address, page aligned.</param>
    /// <param name="flags"><see cref="GupFlags.Write"/> to break copy-on-write for writing.</param>
    /// <param name="pages">Receives the frames.</param>
    /// <returns>How many pages were taken: all of them, or fewer when a later page failed (as the kernel's short count).</returns>
    /// <exception cref="HmmException">
    /// Error model: invalid arguments or state, with the kernel's errno. <see cref="Errno.EINVAL"/>: unaligned start or the range beyond user space; <see cref="Errno.EFAULT"/>: the
    /// first page is unmapped, not accessible this way, in an I/O or PFN-map area, or its fault failed;
    /// <see cref="Errno.ENOMEM"/>: out of memory on the first page; <see cref="Errno.ESRCH"/>: exited. No reference is held after an exception.
    /// </exception>
    public int GetUserPages(ulong start, GupFlags flags, Span<Pfn> pages) => Gup(start, flags, pages, refs: 1);

    /// <summary>As <see cref="GetUserPages"/>, but pins (<c>pin_user_pages_unlocked</c>): each page gains <see cref="PinCountingBias"/> references. Release with <see cref="UnpinUserPages"/>.</summary>
    /// <param name="start">The first address, page aligned.</param>
    /// <param name="flags"><see cref="GupFlags.Write"/>, <see cref="GupFlags.LongTerm"/>.</param>
    /// <param name="pages">Receives the frames.</param>
    /// <returns>How many pages were pinned.</returns>
    /// <exception cref="HmmException">As <see cref="GetUserPages"/>; and <see cref="Errno.EBUSY"/>: a long-term pin of device-coherent memory on the first page that could not first move to RAM (held elsewhere, or no free RAM page).</exception>
    public int PinUserPages(ulong start, GupFlags flags, Span<Pfn> pages) => Gup(start, flags, pages, refs: PinCountingBias);

    /// <summary>Releases pins taken by <see cref="PinUserPages"/> (<c>unpin_user_pages</c>). Every page is checked before any pin is dropped.</summary>
    /// <param name="pages">The pinned frames.</param>
    /// <exception cref="HmmException">Error model: invalid argument, nothing changes. <see cref="Errno.EFAULT"/>: a frame has no struct page.</exception>
    /// <exception cref="KernelBugException">Error model: broken invariant (the kernel's put below zero), nothing changes. A page holds fewer references than the pins the span drops on it.</exception>
    public void UnpinUserPages(ReadOnlySpan<Pfn> pages)
    {
        for (int i = 0; i < pages.Length; i++)
        {
            Pfn pfn = pages[i];
            int references = Memory.PageRefCount(pfn);
            if (references >= (long)pages.Length * PinCountingBias)
            {
                continue;
            }

            int pins = 0;
            for (int j = 0; j < pages.Length; j++)
            {
                pins += pages[j] == pfn ? 1 : 0;
            }

            if (references < (long)pins * PinCountingBias)
            {
                ThrowUnpinnedPage(pfn, pins);
            }
        }

        foreach (Pfn pfn in pages)
        {
            Memory.PutPageRefs(pfn, PinCountingBias);
        }
    }

    /// <summary>Whether a page may be pinned for DMA (<c>folio_maybe_dma_pinned</c>): its refcount is at least <see cref="PinCountingBias"/>.</summary>
    /// <param name="memory">The memory holding the page.</param>
    /// <param name="pfn">The page.</param>
    /// <returns>True when possibly pinned.</returns>
    public static bool MaybeDmaPinned(PhysicalMemory memory, Pfn pfn)
    {
        ArgumentNullException.ThrowIfNull(memory);
        return memory.Page(pfn).RefCount >= PinCountingBias;
    }

    /// <summary>
    /// Whether a read-only pin of the page behind a read-only entry must first make it exclusive (<c>gup_must_unshare</c>):
    /// an anonymous page the process may share after fork; for a long-term pin in a copy-on-write mapping, also the zero
    /// page or a file page, whose copy-on-write is broken early. Otherwise a later write fault would move the process
    /// to a copy and leave the pin on a page it no longer sees.
    /// </summary>
    private bool MustUnshare(Vma vma, Pfn pfn, bool longTerm)
    {
        PageFlags pageFlags = Memory.Page(pfn).Flags;
        if (pfn == PhysicalMemory.ZeroPage || (pageFlags & PageFlags.Anon) == 0)
        {
            return longTerm && (vma.Flags & (VmFlags.Shared | VmFlags.MayWrite)) == VmFlags.MayWrite;
        }

        return (pageFlags & PageFlags.AnonExclusive) == 0;
    }

    private bool IsDeviceCoherent(Pfn pfn) =>
        Memory.Page(pfn).IsZoneDevice && DevPagemap.OfPage(Memory, pfn) is { Type: MemoryType.DeviceCoherent };

    private int Gup(ulong start, GupFlags flags, Span<Pfn> pages, int refs)
    {
        if (!PageSize.IsAligned(start) || start >= TaskSize || (ulong)pages.Length > (TaskSize - start) >> PageSize.Shift)
        {
            ThrowBadGupRange(start, pages.Length);
        }

        using MmapLockGuard guard = MmapReadLock();
        for (int i = 0; i < pages.Length; i++)
        {
            ulong address = start + ((ulong)i << PageSize.Shift);
            Errno error = TryGetOnePage(address, flags, refs, out pages[i]);
            if (error != 0)
            {
                if (i > 0)
                {
                    return i;
                }

                ThrowHelper.ThrowHmm(error, $"GUP at 0x{address:x} failed.");
            }
        }

        return pages.Length;
    }

    private Errno TryGetOnePage(ulong address, GupFlags flags, int refs, out Pfn pfn)
    {
        bool write = (flags & GupFlags.Write) != 0;
        bool readOnlyPin = refs == PinCountingBias && !write;
        pfn = default;
        Vma? vma = _vmas.Find(address);
        VmFlags needed = write ? VmFlags.Write : VmFlags.Read;
        if (vma is null || (vma.Flags & needed) == 0 || (vma.Flags & (VmFlags.Io | VmFlags.PfnMap)) != 0)
        {
            return Errno.EFAULT;
        }

        while (true)
        {
            FaultFlags fault = (write ? FaultFlags.Write : FaultFlags.None) | FaultFlags.Remote;
            Pfn coherent = default;
            PteTable? table = _pageTable.Find(address);
            if (table is not null)
            {
                lock (table.Lock)
                {
                    Pte pte = table.Read(PageTable.PteIndex(address));
                    if (pte.IsSpecial)
                    {
                        // No struct page to take a reference on (vm_normal_page finds none).
                        return Errno.EFAULT;
                    }

                    if (pte.IsPresent && (!write || pte.IsWritable))
                    {
                        if ((flags & GupFlags.LongTerm) != 0 && IsDeviceCoherent(pte.Pfn))
                        {
                            // Coherent device memory must stay evictable: it moves to RAM, then that page is pinned
                            // (migrate_longterm_unpinnable_folios). The reference taken here goes to the migration.
                            coherent = pte.Pfn;
                            Memory.GetPage(coherent);
                        }
                        else if (!readOnlyPin || pte.IsWritable || !MustUnshare(vma, pte.Pfn, (flags & GupFlags.LongTerm) != 0))
                        {
                            pfn = pte.Pfn;
                            Memory.GetPageRefs(pfn, refs);
                            return 0;
                        }
                        else
                        {
                            fault |= FaultFlags.Unshare;
                        }
                    }
                }
            }

            if (coherent != default)
            {
                if (!Migrate.DeviceCoherentPage(Memory, coherent))
                {
                    return Errno.EBUSY;
                }

                continue;
            }

            VmFaultResult result = HandleMmFaultUnchecked(vma, address, fault);
            if (result != VmFaultResult.None)
            {
                return (result & VmFaultResult.Oom) != 0 ? Errno.ENOMEM : Errno.EFAULT;
            }
        }
    }
}
