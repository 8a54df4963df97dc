using System.Diagnostics.CodeAnalysis;
using System.Collections.ObjectModel;
using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// A registered range of device memory with struct pages (<c>struct dev_pagemap</c>). Created by
/// <see cref="Memremap.Map"/> or <see cref="Devm.Map"/>; torn down by
/// <see cref="Memremap.UnmapAsync"/> or by unbinding its device.
/// </summary>
/// <remarks>
/// <para>Lifetime: the pagemap's own lifetime reference (<c>pgmap->ref</c>, observed through
/// <see cref="ReferenceCount"/>) counts one reference per allocated device page, one per lookup
/// (<see cref="Get"/>) not yet disposed, and, for generic and p2p memory, one per page for the mapping's
/// lifetime. Only the library drives it; drivers observe it. Teardown is: kill (no new references), drop the mapping's own references,
/// wait for zero, then remove the struct pages and the lookup entries.</para>
/// <para>Concurrency model: <see cref="InitDevicePage"/>, page puts and lookups are lock-free against each other
/// and against teardown (the lifetime ref arbitrates). Registration and removal hold the memory's hotplug lock.</para>
/// </remarks>
public sealed class DevPagemap : IZoneDevicePageOwner
{
    private readonly Lock _teardownLock = new();
    private readonly PhysicalRange[] _ranges;
    private Task? _teardown;
    private volatile bool _registered;
    private volatile bool _removed;

    internal DevPagemap(PhysicalMemory memory, DevPagemapOptions options, PhysicalRange[] ranges)
    {
        Memory = memory;
        Type = options.Type;
        Owner = options.Owner;
        Ops = options.Ops;
        Name = options.Name;
        _ranges = ranges;
        Ranges = new ReadOnlyCollection<PhysicalRange>(ranges);
        foreach (PhysicalRange range in ranges)
        {
            PageCount += range.PageCount;
        }
    }

    /// <summary>The id that the pagemap's struct pages carry (<see cref="PageFrame.PagemapId"/>). Reused after removal.</summary>
    public int Id { get; internal set; }

    /// <summary>The memory the pagemap extends.</summary>
    public PhysicalMemory Memory { get; }

    /// <summary>The kind of device memory.</summary>
    public MemoryType Type { get; }

    /// <summary>The owner token (<c>pgmap->owner</c>).</summary>
    public object? Owner { get; }

    /// <summary>The driver callbacks.</summary>
    public IDevPagemapOps? Ops { get; }

    /// <summary>The name given at registration.</summary>
    public string Name { get; }

    /// <summary>
    /// The physical ranges (<c>pgmap->ranges</c>): a read-only view over the pagemap's own copy, taken at
    /// registration, so neither the caller's options list nor a cast of this view can change what teardown removes.
    /// </summary>
    public IReadOnlyList<PhysicalRange> Ranges { get; }

    /// <summary>The total number of device pages.</summary>
    public ulong PageCount { get; }

    /// <summary>
    /// The pagemap's lifetime count (<c>percpu_ref</c> of <c>pgmap->ref</c>), read-only: the initial reference
    /// until teardown begins, one per allocated device page, one per undisposed <see cref="Get"/>, and, for
    /// generic and p2p memory, one per page until teardown begins. 0 once teardown can complete.
    /// </summary>
    public long ReferenceCount => Ref.Count;

    /// <summary>
    /// Where the pagemap is in its life. Derived from the lifetime reference itself, so it can never disagree
    /// with lookups: <see cref="DevPagemapState.Live"/> exactly while <see cref="Get"/> can succeed.
    /// </summary>
    public DevPagemapState State => _removed ? DevPagemapState.Removed : Ref.IsDying ? DevPagemapState.Dying : DevPagemapState.Live;

    /// <summary>The pagemap's lifetime reference (<c>pgmap->ref</c>). Internal: only registration, lookups, page frees and teardown drive it.</summary>
    internal LifetimeRef Ref { get; } = new();

    /// <summary>The device whose unbind tears this pagemap down (<see cref="Devm.Map"/>), or null when the caller owns teardown.</summary>
    internal ManagedDevice? Device { get; set; }

    /// <summary>
    /// The number its device's trace events carry (<see cref="ManagedDevice.TraceId"/>): the device of
    /// <see cref="Devm.Map"/>, else the device that claimed the region it maps (<see cref="Devm.RequestFreeRegion"/>), else 0.
    /// </summary>
    internal ushort TraceDevice { get; set; }

    /// <summary>
    /// Finds the pagemap owning a frame and takes a lifetime reference on it (<c>get_dev_pagemap</c>); disposing
    /// the returned handle puts it (<c>put_dev_pagemap</c>). Allocation-free and lock-free.
    /// </summary>
    /// <param name="memory">The physical memory.</param>
    /// <param name="pfn">Any frame.</param>
    /// <returns>
    /// A handle whose <see cref="DevPagemapReference.Pagemap"/> is the live pagemap, or an empty handle (no
    /// reference taken) when the frame is not device memory or its pagemap is dying. This is the kernel's NULL
    /// return, not an error.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    public static DevPagemapReference Get(PhysicalMemory memory, Pfn pfn)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (memory.FindZoneDeviceOwner(memory.FindPagemapId(pfn)) is not DevPagemap pagemap || !pagemap.Ref.TryGetLive())
        {
            return default;
        }

        // The id may have been reused between the two reads, or registration may still be in progress.
        if (!pagemap.IsRegistered || !pagemap.Contains(pfn))
        {
            pagemap.Ref.Put();
            return default;
        }

        return new DevPagemapReference(pagemap);
    }

    /// <summary>
    /// The pagemap of a device page, read from the page itself with no reference taken (<c>page_pgmap</c>); its
    /// <see cref="Owner"/> is <c>pgmap->owner</c>. O(1) and allocation-free: the cheap way for a driver to tell its
    /// own device pages from others. As in the kernel, the answer is stable only while the caller holds a
    /// reference on the page or finds it through a page-table entry; it also works once teardown has begun.
    /// </summary>
    /// <param name="memory">The physical memory.</param>
    /// <param name="pfn">A frame with a struct page.</param>
    /// <returns>The owning pagemap, or null for a page that is not device memory (System RAM).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: the frame has no struct page.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static DevPagemap? OfPage(PhysicalMemory memory, Pfn pfn)
    {
        ArgumentNullException.ThrowIfNull(memory);
        return memory.FindZoneDeviceOwner(memory.Page(pfn).PagemapId) as DevPagemap;
    }

    /// <summary>Whether the frame is one of this pagemap's pages (<c>pgmap_pfn_valid</c>).</summary>
    /// <param name="pfn">The frame.</param>
    /// <returns>True when inside one of <see cref="Ranges"/>.</returns>
    public bool Contains(Pfn pfn)
    {
        foreach (PhysicalRange range in _ranges)
        {
            if (range.Contains(pfn))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Hands a free device page to the driver (<c>zone_device_page_init</c>): takes a lifetime reference on the
    /// pagemap, sets the page's refcount to 1 and locks the page. The driver unlocks it once the page is set up.
    /// </summary>
    /// <param name="pfn">A free page of this pagemap.</param>
    /// <exception cref="HmmException">
    /// <see cref="Errno.EINVAL"/>: not this pagemap's page; <see cref="Errno.ENODEV"/>: the pagemap is dying;
    /// <see cref="Errno.EBUSY"/>: the page is not free. Nothing changes.
    /// </exception>
    public void InitDevicePage(Pfn pfn)
    {
        if (!Contains(pfn))
        {
            ThrowHelper.ThrowNotPagemapPage(pfn, this);
        }

        if (!_registered || !Ref.TryGetLive())
        {
            ThrowHelper.ThrowPagemapDying(this);
        }

        // The page lock is taken before the reference is published, as zone_device_page_init's lock_page waits for a
        // holder: an eviction (migrate_device_range) only trylocks a page it first got a reference on, so it can never
        // believe it holds the lock of a page being handed to the driver.
        ref PageFrame frame = ref Memory.Frame(pfn);
        int seen = Volatile.Read(ref frame._refCount);
        if (seen != 0 || !Memory.TryLockPage(pfn))
        {
            RefuseInit(pfn, seen, locked: false);
        }

        seen = Interlocked.CompareExchange(ref frame._refCount, 1, 0);
        if (seen != 0)
        {
            RefuseInit(pfn, seen, locked: true);
        }

        HmmMetrics.PagemapPageInits.Add(1);
    }

    /// <summary>Undoes a refused <see cref="InitDevicePage"/> (the lock it took, its lifetime reference) and throws EBUSY.</summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RefuseInit(Pfn pfn, int seen, bool locked)
    {
        if (locked)
        {
            Memory.UnlockPage(pfn);
        }

        Ref.Put();
        ThrowHelper.ThrowDevicePageBusy(pfn, seen);
    }

    /// <summary>The pages of this pagemap that hold references now, in PFN order.</summary>
    /// <param name="max">The most pages to report.</param>
    /// <returns>The referenced pages, empty once the pagemap is removed.</returns>
    public IReadOnlyList<ReferencedPage> ReferencedPages(int max = int.MaxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(max);
        var pages = new List<ReferencedPage>();

        // The hotplug lock keeps a teardown that completes meanwhile from removing the frames being sampled.
        lock (Memory.HotplugLock)
        {
            if (State == DevPagemapState.Removed)
            {
                return pages;
            }

            foreach (PhysicalRange range in _ranges)
            {
                for (Pfn pfn = range.StartPfn; pfn.PhysicalAddress < range.End && pages.Count < max; pfn += 1)
                {
                    int count = Memory.Page(pfn).RefCount;
                    if (count > 0)
                    {
                        pages.Add(new ReferencedPage(pfn, count, Id, Name));
                    }
                }
            }
        }

        return pages;
    }

    /// <summary>
    /// Samples what holds the pagemap now: its referenced pages, and the lifetime references no page accounts
    /// for (lookups not yet put). Under the hotplug lock, so a teardown cannot complete while the frames are read.
    /// </summary>
    internal (IReadOnlyList<ReferencedPage> Pages, long Lookups) SampleOutstanding()
    {
        lock (Memory.HotplugLock)
        {
            IReadOnlyList<ReferencedPage> pages = ReferencedPages();
            if (_removed)
            {
                return (pages, 0);
            }

            // Before the kill the count also holds the initial reference and, for generic and p2p, one per page.
            long own = Ref.IsDying ? 0 : 1 + (HoldsPerPageReferences(Type) ? (long)PageCount : 0);
            return (pages, Math.Max(0, Ref.Count - own - pages.Count));
        }
    }

    void IZoneDevicePageOwner.FreeZoneDevicePage(Pfn pfn)
    {
        ref PageFrame frame = ref Memory.Frame(pfn);
        frame._mapping = 0;
        frame._index = 0;
        frame._mapCount = 0;
        Volatile.Write(ref frame._flags, (ulong)PageFlags.ZoneDevice);
        try
        {
            Ops?.PageFree(this, pfn);
        }
        finally
        {
            Ref.Put();
        }
    }

    /// <summary>Marks registration complete: from now on lookups return the pagemap.</summary>
    internal void Publish() => _registered = true;

    /// <summary>Whether lookups may return this pagemap.</summary>
    internal bool IsRegistered => _registered;

    /// <summary>
    /// Starts teardown once (kill, drop the mapping's own references) and returns the task that completes after
    /// the last reference is put and the pages are removed.
    /// </summary>
    /// <param name="explicitUnmap">
    /// True for <see cref="Memremap.Unmap"/>: a second explicit teardown is a kernel bug (the kernel would kill
    /// the percpu_ref twice), refused before anything changes. False for the device's release action, which
    /// joins a teardown already under way.
    /// </param>
    internal Task StartTeardown(bool explicitUnmap = false)
    {
        lock (_teardownLock)
        {
            if (_teardown is not null)
            {
                if (explicitUnmap)
                {
                    ThrowHelper.ThrowBug($"memunmap_pages of pagemap {Id} '{Name}' whose teardown already began ({State}): a pagemap is unmapped once.");
                }

                return _teardown;
            }

            // Recorded as the kill starts, so that its count of pages still referenced precedes anything the kill lets happen.
            TraceLifetime(TracePagemapChange.Kill);
            Ref.Kill();
            if (HoldsPerPageReferences(Type))
            {
                Ref.Put((long)PageCount);
            }

            Log.PagemapKilled(Memory.Logger, Id, Ref.Count);
            _teardown = Ref.Idle.ContinueWith(
                static (_, state) => ((DevPagemap)state!).Remove(),
                this,
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
            return _teardown;
        }
    }

    /// <summary>Generic and p2p memory hold one lifetime reference per page while mapped; private and coherent only per allocated page.</summary>
    internal static bool HoldsPerPageReferences(MemoryType type) => type is MemoryType.Generic or MemoryType.PciP2PDma;

    private void Remove()
    {
        // Runs once the last reference is gone: the pagemap is idle, then its pages are removed.
        TraceLifetime(TracePagemapChange.Idle);
        lock (Memory.HotplugLock)
        {
            Memremap.RemoveRangesUnsynchronized(this, _ranges.Length);
            Memory.UnregisterZoneDeviceOwnerUnsynchronized(Id);
            _removed = true;
        }

        HmmMetrics.PagemapTeardowns.Add(1);
        Log.PagemapRemoved(Memory.Logger, Id);
        TraceLifetime(TracePagemapChange.Removed);
    }

    // A PagemapLifetime event with the pages still referenced: counted for the kill (once per pagemap, and only
    // when tracing is on), zero once the pagemap is idle.
    private void TraceLifetime(TracePagemapChange change)
    {
        TraceEmitter trace = Memory.Trace;
        if (trace.IsEnabled)
        {
            ulong referenced = change == TracePagemapChange.Kill ? CountReferencedPages() : 0;
            trace.Emit(TraceEvent.PagemapLifetime(TraceDevice, (ulong)Id, change, referenced, trace.VirtualNow));
        }
    }

    private ulong CountReferencedPages()
    {
        ulong referenced = 0;
        foreach (PhysicalRange range in _ranges)
        {
            for (Pfn pfn = range.StartPfn; pfn.PhysicalAddress < range.End; pfn += 1)
            {
                if (Memory.Page(pfn).RefCount > 0)
                {
                    referenced++;
                }
            }
        }

        return referenced;
    }
}
