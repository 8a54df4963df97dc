namespace Hmm.Tests.Migration;

/// <summary>
/// A tiny device driver written only against the public migration API, the way lib/test_hmm.c's dmirror uses the
/// kernel's: a device-private (or coherent) pagemap registered with <see cref="Devm.Map"/>, a free list of device
/// pages that <see cref="PageFree"/> refills, migrate_vma to and from the device, a <c>migrate_to_ram</c> that hands
/// the fault straight to <see cref="Migrate.VmaSetup"/>, and eviction by PFN when the device unbinds.
/// </summary>
internal sealed class MigrationTestDriver : IDevPagemapOps
{
    public const int Page = PageSize.Bytes;

    private readonly Lock _lock = new();
    private readonly Stack<Pfn> _free = new();
    private int _migrateToRamCalls;
    private int _failAllocations;

    public MigrationTestDriver(PhysicalMemory memory, string name = "gpu", MemoryType type = MemoryType.DevicePrivate, ulong bytes = 2UL << 20)
    {
        Memory = memory;
        Device = new ManagedDevice(memory, name);
        PhysicalRange range = Devm.RequestFreeRegion(Device, bytes);
        Pagemap = Devm.Map(Device, new DevPagemapOptions { Type = type, Ranges = [range], Owner = Owner, Ops = this, Name = name });

        // Added after the pagemap, so unbinding runs it first: the device's data goes back to RAM before teardown waits.
        Device.AddAction(() =>
        {
            lock (_lock)
            {
                _free.Clear();
            }

            EvictAll();
            return Task.CompletedTask;
        });

        for (ulong i = Pagemap.PageCount; i-- > 0;)
        {
            _free.Push(range.StartPfn + i);
        }

        InitialFreePages = _free.Count;
    }

    public PhysicalMemory Memory { get; }

    public ManagedDevice Device { get; }

    public DevPagemap Pagemap { get; }

    /// <summary>The pagemap owner (<c>pgmap->owner</c>) and the owner passed to migrations.</summary>
    public object Owner { get; } = new();

    public int InitialFreePages { get; }

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

    public int MigrateToRamCalls => Volatile.Read(ref _migrateToRamCalls);

    /// <summary>Decides per page index whether the driver declines to migrate it (to the device).</summary>
    public Func<int, bool>? Decline { get; set; }

    /// <summary>The next <paramref name="count"/> device-page allocations fail.</summary>
    public void FailAllocations(int count) => Volatile.Write(ref _failAllocations, count);

    /// <summary>Takes a page off the free list and initialises it (<c>zone_device_page_init</c>: referenced, locked).</summary>
    public bool TryAllocateDevicePage(out Pfn page)
    {
        lock (_lock)
        {
            if (_failAllocations > 0)
            {
                _failAllocations--;
                page = default;
                return false;
            }

            if (!_free.TryPop(out page))
            {
                return false;
            }
        }

        Pagemap.InitDevicePage(page);
        return true;
    }

    /// <summary>Migrates <c>[start, end)</c> to device memory (dmirror's MIGRATE_TO_DEV). Returns the pages that moved.</summary>
    /// <remarks>
    /// With <paramref name="withinArea"/>, a range that another thread's munmap or mprotect may have changed is first
    /// clipped to the area holding <paramref name="start"/> (nothing moves if none does), as a driver validating a
    /// user's request under the mmap lock would.
    /// </remarks>
    public int MigrateToDevice(Mm mm, ulong start, ulong end, MigrateVmaSelect flags = MigrateVmaSelect.System, bool withinArea = false)
    {
        using MmapLockGuard guard = mm.MmapReadLock();
        Vma? vma = mm.FindVma(start);
        if (withinArea)
        {
            if (vma is null || vma.Start > start)
            {
                return 0;
            }

            end = Math.Min(end, vma.End);
        }

        int npages = (int)((end - start) / Page);
        var src = new ulong[npages];
        var dst = new ulong[npages];
        var args = new MigrateVma
        {
            Vma = vma,
            Start = start,
            End = end,
            Src = src,
            Dst = dst,
            PgmapOwner = Owner,
            Flags = flags,
        };
        Migrate.VmaSetup(ref args);
        for (int i = 0; i < npages; i++)
        {
            if (!MigratePfn.IsMigrating(src[i]) || (Decline?.Invoke(i) ?? false) || !TryAllocateDevicePage(out Pfn device))
            {
                continue;
            }

            if (MigratePfn.TryGetPage(src[i], out Pfn source))
            {
                Memory.PageData(source).CopyTo(Memory.PageData(device));
            }
            else
            {
                Memory.PageData(device).Clear();
            }

            dst[i] = MigratePfn.FromPfn(device) | (src[i] & MigratePfn.Write);
        }

        Migrate.VmaPages(ref args);
        Migrate.VmaFinalize(ref args);
        return src.Count(MigratePfn.IsMigrating);
    }

    /// <summary>Migrates this device's pages of <c>[start, end)</c> back to RAM (dmirror's MIGRATE_TO_SYS). Returns the pages that moved.</summary>
    public int MigrateToSystem(Mm mm, ulong start, ulong end, bool withinArea = false)
    {
        using MmapLockGuard guard = mm.MmapReadLock();
        Vma? vma = mm.FindVma(start);
        if (withinArea)
        {
            if (vma is null || vma.Start > start)
            {
                return 0;
            }

            end = Math.Min(end, vma.End);
        }

        int npages = (int)((end - start) / Page);
        var src = new ulong[npages];
        var dst = new ulong[npages];
        var args = new MigrateVma
        {
            Vma = vma,
            Start = start,
            End = end,
            Src = src,
            Dst = dst,
            PgmapOwner = Owner,
            Flags = Pagemap.Type == MemoryType.DeviceCoherent ? MigrateVmaSelect.DeviceCoherent : MigrateVmaSelect.DevicePrivate,
        };
        Migrate.VmaSetup(ref args);
        CopyToRam(src, dst);
        Migrate.VmaPages(ref args);
        Migrate.VmaFinalize(ref args);
        return src.Count(MigratePfn.IsMigrating);
    }

    public VmFaultResult MigrateToRam(in DevicePrivateFault fault)
    {
        Interlocked.Increment(ref _migrateToRamCalls);
        Span<ulong> src = stackalloc ulong[1];
        Span<ulong> dst = stackalloc ulong[1];
        var args = new MigrateVma
        {
            Vma = fault.Vma,
            Start = fault.Address,
            End = fault.Address + Page,
            Src = src,
            Dst = dst,
            PgmapOwner = Owner,
            Flags = MigrateVmaSelect.DevicePrivate,
            FaultPage = fault.Page,
        };
        Migrate.VmaSetup(ref args);
        bool allocated = CopyToRam(src, dst);
        Migrate.VmaPages(ref args);
        Migrate.VmaFinalize(ref args);
        return allocated ? VmFaultResult.None : VmFaultResult.Oom;
    }

    /// <summary>Moves every page of the device back to RAM by PFN (dmirror's device-remove eviction). Returns the pages that moved.</summary>
    public int EvictAll()
    {
        var src = new ulong[(int)Pagemap.PageCount];
        var dst = new ulong[src.Length];
        Migrate.DeviceRange(Memory, src, Pagemap.Ranges[0].StartPfn);
        CopyToRam(src, dst);
        Migrate.DevicePages(Memory, src, dst);
        Migrate.DeviceFinalize(Memory, src, dst);
        return src.Count(MigratePfn.IsMigrating);
    }

    public void PageFree(DevPagemap pagemap, Pfn pfn)
    {
        lock (_lock)
        {
            _free.Push(pfn);
        }
    }

    /// <summary>Allocates a locked RAM page for each migrating entry and copies; false if RAM ran out for some.</summary>
    private bool CopyToRam(Span<ulong> src, Span<ulong> dst)
    {
        bool all = true;
        for (int i = 0; i < src.Length; i++)
        {
            if (!MigratePfn.IsMigrating(src[i]) || !MigratePfn.TryGetPage(src[i], out Pfn device))
            {
                continue;
            }

            if (!Memory.TryAllocatePage(out Pfn ram))
            {
                all = false;
                continue;
            }

            Memory.LockPage(ram);
            Memory.PageData(device).CopyTo(Memory.PageData(ram));
            dst[i] = MigratePfn.FromPfn(ram);
        }

        return all;
    }
}
