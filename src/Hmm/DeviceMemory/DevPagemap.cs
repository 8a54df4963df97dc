
namespace Hmm;

/// <summary>
/// A registered range of device memory with struct pages (<c>struct dev_pagemap</c>). Created by
/// <see cref="Memremap.Map"/> or <see cref="Devm.Map"/>; torn down by
/// <see cref="Memremap.UnmapAsync"/> or by unbinding its device.
/// </summary>
/// <remarks>
/// <para>Lifetime: the pagemap's own <see cref="LifetimeRef"/> counts one reference per allocated device page,
/// one per lookup (<see cref="Memremap.GetDevPagemap"/>) not yet put, and, for generic and p2p memory, one per
/// page for the mapping's lifetime. Teardown is: kill (no new references), drop the mapping's own references,
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
    private volatile DevPagemapState _state;

    internal DevPagemap(PhysicalMemory memory, DevPagemapOptions options, PhysicalRange[] ranges)
    {
        Memory = memory;
        Type = options.Type;
        Owner = options.Owner;
        Ops = options.Ops;
        Name = options.Name;
        _ranges = ranges;
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

    /// <summary>The physical ranges (<c>pgmap->ranges</c>).</summary>
    public IReadOnlyList<PhysicalRange> Ranges => _ranges;

    /// <summary>The total number of device pages.</summary>
    public ulong PageCount { get; }

    /// <summary>The pagemap's lifetime reference (<c>pgmap->ref</c>), for diagnostics.</summary>
    public LifetimeRef Ref { get; } = new();

    /// <summary>Where the pagemap is in its life.</summary>
    public DevPagemapState State => _state;

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
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"{pfn} is not a page of pagemap {Id} '{Name}'.");
        }

        if (!_registered || !Ref.TryGetLive())
        {
            ThrowHelper.ThrowHmm(Errno.ENODEV, $"Pagemap {Id} '{Name}' is {State}: no device page may be initialised after teardown began.");
        }

        ref PageFrame frame = ref Memory.Frame(pfn);
        if (Interlocked.CompareExchange(ref frame._refCount, 1, 0) != 0)
        {
            Ref.Put();
            ThrowHelper.ThrowHmm(Errno.EBUSY, $"{pfn} is in use (refcount {frame.RefCount}); only a free device page can be initialised.");
        }

        Interlocked.Or(ref frame._flags, (ulong)PageFlags.Locked);
        HmmMetrics.DevicePageInits.Add(1);
    }

    /// <summary>Drops the reference a lookup took (<c>put_dev_pagemap</c>).</summary>
    /// <exception cref="KernelBugException">
    /// No lookup or page reference was outstanding (more puts than gets); nothing changes. An extra put while
    /// other references are out cannot be told apart from a legitimate one, as in the kernel.
    /// </exception>
    public void Put() => Ref.Put();

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
    internal Task StartTeardown()
    {
        lock (_teardownLock)
        {
            if (_teardown is not null)
            {
                return _teardown;
            }

            _state = DevPagemapState.Dying;
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
        lock (Memory.HotplugLock)
        {
            Memremap.RemoveRangesUnsynchronized(this, _ranges.Length);
            Memory.UnregisterZoneDeviceOwnerUnsynchronized(Id);
            _state = DevPagemapState.Removed;
        }

        HmmMetrics.PagemapTeardowns.Add(1);
        Log.PagemapRemoved(Memory.Logger, Id);
    }
}
