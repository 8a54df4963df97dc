
namespace Hmm.Tests.DeviceMemory;

/// <summary>
/// A minimal driver for the device-memory tests: it owns pagemaps, keeps a free list of device pages (the way
/// lib/test_hmm.c's dmirror does), and records every <see cref="IDevPagemapOps.PageFree"/> call together with
/// what the pagemap looked like during the call.
/// </summary>
public sealed class TestDriver : IDevPagemapOps
{
    private readonly Lock _lock = new();
    private readonly Stack<Pfn> _free = new();
    private readonly List<PageFreeCall> _pageFreeCalls = [];

    /// <summary>The owner token the driver puts in its pagemaps.</summary>
    public object Owner { get; } = new();

    /// <summary>Runs inside <see cref="PageFree"/>, after the call is recorded.</summary>
    public Action<DevPagemap, Pfn>? OnPageFree { get; set; }

    /// <summary>Every page-free call so far, in order.</summary>
    public IReadOnlyList<PageFreeCall> PageFreeCalls
    {
        get
        {
            lock (_lock)
            {
                return [.. _pageFreeCalls];
            }
        }
    }

    /// <summary>Pages on the free list.</summary>
    public int FreePageCount
    {
        get
        {
            lock (_lock)
            {
                return _free.Count;
            }
        }
    }

    /// <summary>Registration options for a pagemap of this driver.</summary>
    public DevPagemapOptions Options(MemoryType type, params PhysicalRange[] ranges) =>
        new() { Type = type, Ranges = ranges, Owner = Owner, Ops = this, Name = $"test-{type}" };

    /// <summary>Registration options for device-private memory of this driver.</summary>
    public DevPagemapOptions PrivateOptions(params PhysicalRange[] ranges) => Options(MemoryType.DevicePrivate, ranges);

    /// <summary>Puts every page of the pagemap on the free list; the lowest frame comes off first.</summary>
    public void AddFreePages(DevPagemap pagemap)
    {
        ArgumentNullException.ThrowIfNull(pagemap);
        lock (_lock)
        {
            for (int r = pagemap.Ranges.Count - 1; r >= 0; r--)
            {
                PhysicalRange range = pagemap.Ranges[r];
                for (ulong i = range.PageCount; i > 0; i--)
                {
                    _free.Push(range.StartPfn + (i - 1));
                }
            }
        }
    }

    /// <summary>
    /// Takes a page off the free list and initialises it (<c>zone_device_page_init</c>): refcount 1, locked.
    /// Returns false when the free list is empty; if the initialisation fails, the page goes back on the list
    /// and the exception propagates.
    /// </summary>
    public bool TryAllocate(DevPagemap pagemap, out Pfn pfn)
    {
        ArgumentNullException.ThrowIfNull(pagemap);
        lock (_lock)
        {
            if (!_free.TryPop(out pfn))
            {
                return false;
            }
        }

        try
        {
            pagemap.InitDevicePage(pfn);
        }
        catch (HmmException)
        {
            lock (_lock)
            {
                _free.Push(pfn);
            }

            throw;
        }

        return true;
    }

    /// <inheritdoc/>
    public void PageFree(DevPagemap pagemap, Pfn pfn)
    {
        ArgumentNullException.ThrowIfNull(pagemap);
        ref readonly PageFrame page = ref pagemap.Memory.Page(pfn);
        var call = new PageFreeCall(pagemap, pfn, pagemap.ReferenceCount, pagemap.State, page.RefCount, page.Flags);
        lock (_lock)
        {
            _pageFreeCalls.Add(call);
            _free.Push(pfn);
        }

        OnPageFree?.Invoke(pagemap, pfn);
    }

    /// <inheritdoc/>
    public VmFaultResult MigrateToRam(in DevicePrivateFault fault) => VmFaultResult.Sigbus;
}

/// <summary>One <see cref="IDevPagemapOps.PageFree"/> call and what the pagemap and page looked like during it.</summary>
public readonly record struct PageFreeCall(
    DevPagemap Pagemap,
    Pfn Pfn,
    long LifetimeRefCount,
    DevPagemapState State,
    int PageRefCount,
    PageFlags PageFlags);
