using Hmm;

namespace DriverGuide;

/// <summary>
/// The device-memory half of the guide's driver (the kernel test driver's <c>dmirror_device</c>): it owns the
/// device-private pages of one pagemap, hands them out and takes them back when their last reference goes.
/// </summary>
public sealed class DeviceMemoryDriver : IDevPagemapOps
{
    private readonly Lock _freeLock = new();
    private readonly Stack<Pfn> _free = new();
    private int _pagesFreed;

    /// <summary>How many device pages came back through <see cref="PageFree"/>.</summary>
    public int PagesFreed => Volatile.Read(ref _pagesFreed);

    /// <summary>How many device pages the driver can hand out now.</summary>
    public int FreePages
    {
        get
        {
            lock (_freeLock)
            {
                return _free.Count;
            }
        }
    }

    /// <summary>Adds every page of a claimed region to the free list, lowest address handed out first.</summary>
    /// <param name="range">A region from <see cref="Devm.RequestFreeRegion"/>.</param>
    public void AddFreePages(PhysicalRange range)
    {
        lock (_freeLock)
        {
            for (ulong i = range.PageCount; i > 0; i--)
            {
                _free.Push(range.StartPfn + (i - 1));
            }
        }
    }

    // <snippet:pagemap-ops>
    // folio_free: the last reference to one of my pages is gone. Called without library locks held, on the
    // thread that put the page; must not throw.
    public void PageFree(DevPagemap pagemap, Pfn pfn)
    {
        lock (_freeLock)
        {
            _free.Push(pfn);
        }

        Interlocked.Increment(ref _pagesFreed);
    }

    // migrate_to_ram: the CPU touched one of my pages that a process maps. This driver never moves process
    // memory to the device, so no process maps its pages and this cannot run; a migrating driver copies the
    // page back into a new RAM page here and returns VmFaultResult.None.
    public VmFaultResult MigrateToRam(in DevicePrivateFault fault) => VmFaultResult.Sigbus;
    // </snippet:pagemap-ops>

    // <snippet:device-page>
    // A device allocation: take a free page, then zone_device_page_init. The page comes back with refcount 1
    // and locked; unlock it once it is set up. Its last PutPage calls PageFree above.
    public bool TryAllocateDevicePage(DevPagemap pagemap, out Pfn pfn)
    {
        lock (_freeLock)
        {
            if (!_free.TryPop(out pfn))
            {
                return false;
            }
        }

        try
        {
            pagemap.InitDevicePage(pfn);    // HmmException ENODEV once the pagemap's teardown began
        }
        catch (HmmException)
        {
            lock (_freeLock)
            {
                _free.Push(pfn);
            }

            throw;
        }

        pagemap.Memory.UnlockPage(pfn);
        return true;
    }
    // </snippet:device-page>
}
