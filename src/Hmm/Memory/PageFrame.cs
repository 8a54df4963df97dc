using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Hmm;

/// <summary>
/// The metadata of one physical page frame: the kernel's <c>struct page</c>. One of these exists per frame in
/// the memmap, in section-sized arrays; there is no object per page. Read it through
/// <see cref="PhysicalMemory.Page(Pfn)"/>; change it only through <see cref="PhysicalMemory"/> members, which keep
/// the atomicity rules below.
/// </summary>
/// <remarks>
/// <code>
///  0        8        12       16       20       24       32       40       48       56
///  +--------+--------+--------+--------+--------+--------+--------+--------+
///  | flags  |refcount|mapcount| pgmap  | order  |mapping | index  | zddata | private|
///  +--------+--------+--------+--------+--------+--------+--------+--------+
///     u64      i32      i32      i32      i32      u64      u64      u64      u64     = 56 bytes
/// </code>
/// <para>Concurrency model: <c>flags</c> changes only with <see cref="System.Threading.Interlocked"/> (the lock
/// bit lives there); <c>refcount</c> changes only with Interlocked; <c>mapcount</c>, <c>mapping</c> and
/// <c>index</c> change under the page-table lock of the mapping or the page lock; <c>zddata</c> and
/// <c>private</c> belong to the page's owner (the driver for device pages).</para>
/// <para>Unlike the kernel, <c>mapcount</c> counts from 0 (the kernel stores mapcount - 1).</para>
/// </remarks>
[StructLayout(LayoutKind.Sequential, Pack = 8)]
public struct PageFrame
{
    internal ulong _flags;
    internal int _refCount;
    internal int _mapCount;
    internal int _pagemapId;
    internal int _order;
    internal ulong _mapping;
    internal ulong _index;
    internal ulong _zoneDeviceData;
    internal ulong _private;

    /// <summary>The page flags (<c>page->flags</c>).</summary>
    public readonly PageFlags Flags => (PageFlags)Volatile.Read(ref Unsafe.AsRef(in _flags));

    /// <summary>The reference count (<c>page_ref_count</c>); 0 means free.</summary>
    public readonly int RefCount => Volatile.Read(ref Unsafe.AsRef(in _refCount));

    /// <summary>How many page-table entries map the page (<c>page_mapcount</c>, counting from 0).</summary>
    public readonly int MapCount => Volatile.Read(ref Unsafe.AsRef(in _mapCount));

    /// <summary>The id of the owning device pagemap, or 0 for System RAM (<c>page_pgmap</c>, as an index).</summary>
    public readonly int PagemapId => _pagemapId;

    /// <summary>The compound order (0 for a base page; reserved until compound pages exist). Internal: always 0 for now.</summary>
    internal readonly int Order => _order;

    /// <summary>
    /// The handle of the object that maps this page (<c>page->mapping</c>): an anon_vma or file mapping id, 0 when
    /// none. Internal: the handle means something only to the library's own mapping table (rmap).
    /// </summary>
    internal readonly ulong Mapping => _mapping;

    /// <summary>The page's offset in its mapping, in pages (<c>page->index</c>). Internal: rmap's, not a driver's.</summary>
    internal readonly ulong Index => _index;

    /// <summary>Driver-private data of a device page (<c>page->zone_device_data</c>).</summary>
    public readonly ulong ZoneDeviceData => _zoneDeviceData;

    /// <summary>Owner-private data (<c>page->private</c>). Internal: no public call sets it; drivers use <see cref="ZoneDeviceData"/>.</summary>
    internal readonly ulong Private => _private;

    /// <summary>Whether the page lock is held.</summary>
    public readonly bool IsLocked => (Flags & PageFlags.Locked) != 0;

    /// <summary>Whether the page belongs to a device pagemap.</summary>
    public readonly bool IsZoneDevice => (Flags & PageFlags.ZoneDevice) != 0;
}
