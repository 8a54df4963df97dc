using Hmm;

namespace DriverGuide;

/// <summary>
/// The device-memory half of the guide's driver (the kernel test driver's <c>dmirror_device</c>): it owns the
/// device-private pages of one pagemap, hands them out, takes them back when their last reference goes, copies a
/// page back to System RAM when the CPU touches it, and moves everything back to RAM before the device goes away.
/// </summary>
public sealed class DeviceMemoryDriver : IDevPagemapOps
{
    private readonly Lock _freeLock = new();
    private readonly Stack<Pfn> _free = new();
    private readonly Dictionary<Pfn, ProcessMirror> _mirrorOf = [];
    private int _pagesFreed;
    private int _migrateToRamCalls;
    private int _pagesEvicted;

    /// <summary>How many device pages came back through <see cref="PageFree"/>.</summary>
    public int PagesFreed => Volatile.Read(ref _pagesFreed);

    /// <summary>How many times the CPU faulted on one of this driver's pages (<see cref="MigrateToRam"/> ran).</summary>
    public int MigrateToRamCalls => Volatile.Read(ref _migrateToRamCalls);

    /// <summary>How many device pages <see cref="Evict"/> moved back to System RAM.</summary>
    public int PagesEvicted => Volatile.Read(ref _pagesEvicted);

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
            _mirrorOf.Remove(pfn);
            _free.Push(pfn);
        }

        Interlocked.Increment(ref _pagesFreed);
    }
    // </snippet:pagemap-ops>

    // <snippet:device-page>
    // A device allocation: take a free page, then zone_device_page_init. The page comes back with refcount 1
    // and locked, as a migration destination must be; its last PutPage calls PageFree above. The mirror that
    // will map it is remembered (the kernel keeps it in page->zone_device_data) for the fault path.
    public bool TryAllocateDevicePage(DevPagemap pagemap, ProcessMirror? mirror, out Pfn pfn)
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

        if (mirror is not null)
        {
            lock (_freeLock)
            {
                _mirrorOf[pfn] = mirror;
            }
        }

        return true;
    }
    // </snippet:device-page>

    // <snippet:migrate-to-ram>
    // migrate_to_ram: the CPU touched one of my pages that a process maps (dmirror_devmem_fault). The fault
    // path holds the page locked and referenced and the area's mmap lock; move this one page back to a new
    // RAM page and return None, and the CPU access is retried on it.
    public VmFaultResult MigrateToRam(in DevicePrivateFault fault)
    {
        Interlocked.Increment(ref _migrateToRamCalls);
        PhysicalMemory memory = fault.Pagemap.Memory;
        Span<ulong> src = stackalloc ulong[1];
        Span<ulong> dst = stackalloc ulong[1];
        var args = new MigrateVma
        {
            Vma = fault.Vma,
            Start = fault.Address,
            End = fault.Address + PageSize.Bytes,
            Src = src,
            Dst = dst,
            PgmapOwner = fault.Pagemap.Owner,       // collect my own device-private pages only
            Flags = MigrateVmaSelect.DevicePrivate,
            FaultPage = fault.Page,                 // already locked by the fault path: setup must not lock it again
        };

        try
        {
            Migrate.VmaSetup(ref args);
        }
        catch (HmmException)
        {
            return VmFaultResult.Sigbus;            // migrate_vma_setup failed: nothing was collected
        }

        // Not collected (another thread moved it first, or it is pinned): nothing to copy, the retried access
        // finds whatever the page table holds now.
        VmFaultResult result = VmFaultResult.None;
        if (MigratePfn.IsMigrating(src[0]) && MigratePfn.TryGetPage(src[0], out Pfn devicePage))
        {
            if (memory.TryAllocatePage(out Pfn ram))
            {
                memory.LockPage(ram);               // destinations are locked until finalize
                ForgetDeviceMapping(devicePage, fault.Address);
                memory.ReadPageData(devicePage).CopyTo(memory.PageData(ram));
                dst[0] = MigratePfn.FromPfn(ram) | (src[0] & MigratePfn.Write);
            }
            else
            {
                result = VmFaultResult.Oom;         // no destination: the page stays on the device, mapped as before
            }
        }

        // Always both steps after a successful setup, on the error path too: finalize restores what did not move.
        Migrate.VmaPages(ref args);
        Migrate.VmaFinalize(ref args);
        return result;
    }
    // </snippet:migrate-to-ram>

    // <snippet:evict>
    // Before the device goes away, move every page still in use back to System RAM by PFN, whoever maps it
    // (dmirror_device_evict_chunk): the library finds the mappings through the reverse map, in every process.
    // Runs as a devm action at unbind, before the pagemap's teardown waits for its pages to be free.
    public int Evict(DevPagemap pagemap)
    {
        PhysicalMemory memory = pagemap.Memory;
        int moved = 0;
        foreach (PhysicalRange range in pagemap.Ranges)
        {
            var src = new ulong[range.PageCount];
            var dst = new ulong[range.PageCount];
            Migrate.DeviceRange(memory, src, range.StartPfn);  // free pages come back 0; used ones locked and unmapped
            for (int i = 0; i < src.Length; i++)
            {
                if (!MigratePfn.IsMigrating(src[i]) || !MigratePfn.TryGetPage(src[i], out Pfn devicePage))
                {
                    continue;
                }

                // The kernel allocates with __GFP_NOFAIL; here a page without a destination stays on the device,
                // mapped as before, and the pagemap's teardown reports it instead of losing its data.
                if (!memory.TryAllocatePage(out Pfn ram))
                {
                    continue;
                }

                memory.LockPage(ram);
                memory.ReadPageData(devicePage).CopyTo(memory.PageData(ram));
                dst[i] = MigratePfn.FromPfn(ram) | (src[i] & MigratePfn.Write);
            }

            Migrate.DevicePages(memory, src, dst);
            Migrate.DeviceFinalize(memory, src, dst);
            moved += src.Count(MigratePfn.IsMigrating);
        }

        Interlocked.Add(ref _pagesEvicted, moved);
        return moved;
    }
    // </snippet:evict>

    /// <summary>
    /// The fault path's own migration skips the mirror's invalidation (its owner is this driver), so the driver
    /// removes the device's mapping of the page itself, as <c>dmirror_devmem_fault_alloc_and_copy</c> does.
    /// </summary>
    private void ForgetDeviceMapping(Pfn devicePage, ulong address)
    {
        ProcessMirror? mirror;
        lock (_freeLock)
        {
            _mirrorOf.TryGetValue(devicePage, out mirror);
        }

        mirror?.ForgetDevicePage(address);
    }
}
