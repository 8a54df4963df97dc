namespace Hmm;

/// <summary>
/// Bits of <see cref="PageFrame.Flags"/>, the kernel's <c>page->flags</c> (enum <c>pageflags</c>). Every bit
/// changes atomically because <see cref="Locked"/> is taken and released concurrently with the other bits.
/// </summary>
[Flags]
public enum PageFlags : ulong
{
    /// <summary>No flag set.</summary>
    None = 0,

    /// <summary><c>PG_locked</c>: the page lock. Taken by migration, faults and device page initialisation.</summary>
    Locked = 1UL << 0,

    /// <summary><c>PG_waiters</c>: a thread sleeps waiting for <see cref="Locked"/> to clear.</summary>
    Waiters = 1UL << 1,

    /// <summary><c>PG_referenced</c>: recently accessed.</summary>
    Referenced = 1UL << 2,

    /// <summary><c>PG_uptodate</c>: the contents are valid.</summary>
    Uptodate = 1UL << 3,

    /// <summary><c>PG_dirty</c>: the contents differ from the backing store.</summary>
    Dirty = 1UL << 4,

    /// <summary><c>PG_lru</c>: on an LRU list (isolatable for migration).</summary>
    Lru = 1UL << 5,

    /// <summary><c>PG_head</c>: first page of a compound page (reserved; compound pages arrive with THP).</summary>
    Head = 1UL << 6,

    /// <summary>Tail page of a compound page (reserved; compound pages arrive with THP).</summary>
    Tail = 1UL << 7,

    /// <summary><c>PG_reserved</c>: never handed to the page allocator.</summary>
    Reserved = 1UL << 8,

    /// <summary>The frame belongs to <c>ZONE_DEVICE</c>: a device pagemap owns it.</summary>
    ZoneDevice = 1UL << 9,

    /// <summary>The page is anonymous memory (<c>PageAnon</c>, the low bit of the kernel's <c>mapping</c>).</summary>
    Anon = 1UL << 10,

    /// <summary><c>PG_anon_exclusive</c>: an anonymous page mapped by exactly one process, safe to pin.</summary>
    AnonExclusive = 1UL << 11,

    /// <summary><c>PG_swapbacked</c>: backed by swap rather than a file.</summary>
    SwapBacked = 1UL << 12,
}
