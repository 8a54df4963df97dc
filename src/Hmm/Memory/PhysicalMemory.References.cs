using System.Runtime.CompilerServices;

namespace Hmm;

// Page references: get_page / get_page_unless_zero / put_page. Lock-free: the refcount is one int changed with
// Interlocked. The put that reaches zero frees the page, on the putting thread: RAM goes back to the allocator,
// a device page goes to its pagemap (which calls the driver's page-free and then drops its lifetime reference).
public sealed partial class PhysicalMemory
{
    /// <summary>Takes a reference on a page the caller already holds a reference to (<c>get_page</c>).</summary>
    /// <param name="pfn">The page.</param>
    /// <exception cref="KernelBugException">The page is free (refcount 0): the caller had no reference. The count is left as it was.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void GetPage(Pfn pfn)
    {
        ref PageFrame frame = ref Frame(pfn);
        if (Interlocked.Increment(ref frame._refCount) <= 1)
        {
            UndoGetOfFreePage(ref frame, pfn, 1);
        }
    }

    /// <summary>Takes a reference unless the page is free (<c>get_page_unless_zero</c>): the speculative form.</summary>
    /// <param name="pfn">The page.</param>
    /// <returns>True when a reference was taken; false when the refcount was zero.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page.</exception>
    public bool TryGetPage(Pfn pfn)
    {
        ref PageFrame frame = ref Frame(pfn);
        int count = Volatile.Read(ref frame._refCount);
        while (count > 0)
        {
            int seen = Interlocked.CompareExchange(ref frame._refCount, count + 1, count);
            if (seen == count)
            {
                return true;
            }

            count = seen;
        }

        return false;
    }

    /// <summary>
    /// Drops a reference (<c>put_page</c>). The put that reaches zero frees the page: a RAM page returns to the
    /// allocator; a device page is handed to its pagemap's page-free callback, after which the pagemap's
    /// lifetime reference is dropped.
    /// </summary>
    /// <param name="pfn">The page.</param>
    /// <exception cref="KernelBugException">
    /// The refcount would go below zero; or the put would free a reserved page (frame 0 or
    /// <see cref="ZeroPage"/>: the kernel's "bad page state"); or a freed RAM page is still mapped or locked.
    /// The refcount is left as it was.
    /// </exception>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PutPage(Pfn pfn)
    {
        ref PageFrame frame = ref Frame(pfn);
        int count = Interlocked.Decrement(ref frame._refCount);
        if (count <= 0)
        {
            PutLastReference(ref frame, pfn, count, 1);
        }
    }

    /// <summary>
    /// <see cref="PutPage"/> for loops that release many pages: a RAM page the put frees goes to <paramref name="batch"/>,
    /// which hands its pages to the allocator under one lock round trip when it flushes. The page's frame is cleared at
    /// once, as by <see cref="PutPage"/>; until the flush it is simply not yet allocatable.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void PutPageBatched(Pfn pfn, ref RamFreeBatch batch)
    {
        ref PageFrame frame = ref Frame(pfn);
        int count = Interlocked.Decrement(ref frame._refCount);
        if (count <= 0 && ReleaseLastReference(ref frame, pfn, count, 1))
        {
            batch.Add(pfn);
        }
    }

    /// <summary>Gives freed RAM pages back to the allocator at once (a <see cref="RamFreeBatch"/> flush).</summary>
    internal void ReturnRamPages(ReadOnlySpan<ulong> pfns)
    {
        _ram.FreeMany(pfns);
        HmmMetrics.PageFrees.Add(pfns.Length);
    }

    /// <summary>Takes <paramref name="count"/> references at once on a referenced page (<c>folio_ref_add</c>; pins add 1024).</summary>
    internal void GetPageRefs(Pfn pfn, int count)
    {
        ref PageFrame frame = ref Frame(pfn);
        if (Interlocked.Add(ref frame._refCount, count) <= count)
        {
            UndoGetOfFreePage(ref frame, pfn, count);
        }
    }

    /// <summary>Drops <paramref name="count"/> references at once (<c>folio_put_refs</c>); frees the page at zero, with <see cref="PutPage"/>'s checks.</summary>
    internal void PutPageRefs(Pfn pfn, int count)
    {
        ref PageFrame frame = ref Frame(pfn);
        int left = Interlocked.Add(ref frame._refCount, -count);
        if (left <= 0)
        {
            PutLastReference(ref frame, pfn, left, count);
        }
    }

    /// <summary>The page's reference count (<c>page_ref_count</c>).</summary>
    /// <param name="pfn">The page.</param>
    /// <returns>The current count; 0 means free.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page.</exception>
    public int PageRefCount(Pfn pfn) => Volatile.Read(ref Frame(pfn)._refCount);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void UndoGetOfFreePage(ref PageFrame frame, Pfn pfn, int count)
    {
        Interlocked.Add(ref frame._refCount, -count);
        ThrowHelper.ThrowGetOfFreePage(pfn, count);
    }

    /// <summary>
    /// The slow path of a put that left <paramref name="left"/> &lt;= 0 after dropping <paramref name="dropped"/>
    /// references. Every refusal gives the dropped references back before it throws, so the count is unchanged.
    /// </summary>
    private void PutLastReference(ref PageFrame frame, Pfn pfn, int left, int dropped)
    {
        if (ReleaseLastReference(ref frame, pfn, left, dropped))
        {
            _ram.Free(pfn);
            HmmMetrics.PageFrees.Add(1);
        }
    }

    /// <summary>
    /// <see cref="PutLastReference"/> up to the allocator: checks the page, hands a device page to its owner, clears a
    /// RAM page's flags and returns true when the RAM page must now go back to the allocator.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool ReleaseLastReference(ref PageFrame frame, Pfn pfn, int left, int dropped)
    {
        if (left < 0)
        {
            Interlocked.Add(ref frame._refCount, dropped);
            ThrowHelper.ThrowPutBelowZero(pfn, dropped);
        }

        ulong flags = Volatile.Read(ref frame._flags);

        // A reserved page (frame 0, the zero page) is never the allocator's: freeing one is the kernel's bad page state.
        if ((flags & (ulong)PageFlags.Reserved) != 0)
        {
            Interlocked.Add(ref frame._refCount, dropped);
            ThrowHelper.ThrowBadPageState(pfn, (PageFlags)flags, Volatile.Read(ref frame._mapCount));
        }

        if ((flags & (ulong)PageFlags.ZoneDevice) != 0)
        {
            HmmMetrics.PageFrees.Add(1);
            ZoneDeviceOwner(frame._pagemapId).FreeZoneDevicePage(pfn);
            return false;
        }

        int mapCount = Volatile.Read(ref frame._mapCount);
        if (mapCount != 0 || (flags & (ulong)PageFlags.Locked) != 0)
        {
            Interlocked.Add(ref frame._refCount, dropped);
            ThrowHelper.ThrowBadPageState(pfn, (PageFlags)flags, mapCount);
        }

        Volatile.Write(ref frame._flags, 0);
        return true;
    }
}
