using Hmm;

namespace DriverGuide;

/// <summary>
/// The mirroring half of the guide's driver (the kernel test driver's <c>dmirror</c>): a device page table that
/// mirrors one range of a process, filled through <see cref="HmmRange.Fault"/> with the protocol of the kernel's
/// Documentation/mm/hmm.rst and emptied by the interval notifier's invalidate callback. It can also move the range
/// into the device's memory (<c>migrate_vma</c>) and then maps the device pages.
/// </summary>
public sealed class ProcessMirror : IMmuIntervalNotifierOps
{
    private readonly Mm _mm;
    private readonly object _owner;
    private readonly ulong[] _pfns;
    private readonly Lock _update = new();
    private readonly Dictionary<ulong, ulong> _devicePageTable = [];
    private readonly MmuIntervalNotifier _notifier;
    private int _retries;
    private int _invalidations;

    // <snippet:insert>
    // One interval notifier over the mirrored range (mmu_interval_notifier_insert). From here on, every change
    // to the range's CPU page tables first calls Invalidate below.
    public ProcessMirror(Mm mm, ulong start, ulong length, object owner)
    {
        _mm = mm;
        _owner = owner;
        _pfns = new ulong[length / PageSize.Bytes];    // one entry per page, reused by every Populate
        _notifier = MmuIntervalNotifier.Insert(mm, start, length, this);
    }
    // </snippet:insert>

    /// <summary>How many times <see cref="Populate"/> started again (EBUSY from the walk, or ReadRetry true).</summary>
    public int Retries => Volatile.Read(ref _retries);

    /// <summary>How many invalidations the callback handled.</summary>
    public int Invalidations => Volatile.Read(ref _invalidations);

    /// <summary>A copy of the device page table: virtual page address to HMM PFN entry.</summary>
    /// <returns>The entries, in address order.</returns>
    public IReadOnlyList<KeyValuePair<ulong, ulong>> DevicePageTable()
    {
        lock (_update)
        {
            return [.. _devicePageTable.OrderBy(e => e.Key)];
        }
    }

    // <snippet:invalidate>
    // ops->invalidate: the CPU page tables of [range.Start, range.End) are about to change. Take the driver
    // lock (or give up when the caller cannot wait), record the sequence, and drop the device's mappings of
    // the range before returning true: after that the device must not use them.
    public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
    {
        // Migrations this driver started itself change nothing the device relies on.
        if (range.Event == MmuNotifierEvent.Migrate && ReferenceEquals(range.Owner, _owner))
        {
            return true;
        }

        if (range.Blockable)
        {
            _update.Enter();
        }
        else if (!_update.TryEnter())
        {
            return false;
        }

        try
        {
            subscription.SetSequence(currentSequence);    // always, under the lock that ReadRetry runs under
            ulong start = Math.Max(range.Start, subscription.Start);
            ulong end = Math.Min(range.End, subscription.End);
            for (ulong address = start; address < end; address += PageSize.Bytes)
            {
                _devicePageTable.Remove(address);
            }

            _invalidations++;
        }
        finally
        {
            _update.Exit();
        }

        return true;
    }
    // </snippet:invalidate>

    // <snippet:populate>
    // Mirror [start, end) into the device page table (the driver_populate_range of hmm.rst). The errors of
    // hmm_range_fault come back as its return value; only a bad argument throws.
    public Errno Populate(ulong start, ulong end, ulong requestFlags)
    {
        var range = new HmmRange
        {
            Notifier = _notifier,
            Start = start,
            End = end,
            HmmPfns = _pfns,                  // the driver's array: a populated range allocates nothing
            DefaultFlags = requestFlags,      // e.g. HmmPfn.RequestFault: every page must come back valid
            PfnFlagsMask = 0,                 // no per-page requests
            DevicePrivateOwner = _owner,      // my own device-private pages are reported, never faulted
        };

        if (!_mm.TryGet())                    // mmget_not_zero: the process may be exiting
        {
            return Errno.EFAULT;
        }

        try
        {
            while (true)
            {
                range.NotifierSequence = _notifier.ReadBegin();
                Errno result;
                using (_mm.MmapReadLock())
                {
                    result = range.Fault();
                }

                if (result == Errno.EBUSY)
                {
                    Interlocked.Increment(ref _retries);
                    continue;                 // an invalidation hit the range: start again
                }

                if (result != Errno.None)
                {
                    return result;            // EFAULT, EPERM or ENOMEM
                }

                lock (_update)
                {
                    if (_notifier.ReadRetry(range.NotifierSequence))
                    {
                        Interlocked.Increment(ref _retries);
                        continue;             // the snapshot is stale: start again
                    }

                    // Still under the update lock: no invalidation can run until the device table is written.
                    UpdateDevicePageTable(start, end);
                    return Errno.None;
                }
            }
        }
        finally
        {
            _mm.Put();
        }
    }
    // </snippet:populate>

    // <snippet:ioctl>
    // The driver's entry point for user space returns 0 or -errno, as an ioctl does. Kernel return codes
    // come back as values; an invalid argument is an HmmException carrying the errno the kernel would return.
    // A KernelBugException is not an HmmException, so a bug in this driver still surfaces as one.
    public int MirrorIoctl(ulong start, ulong end, ulong requestFlags)
    {
        try
        {
            return -(int)Populate(start, end, requestFlags);
        }
        catch (HmmException e)
        {
            return -(int)e.Error;
        }
    }
    // </snippet:ioctl>

    // <snippet:migrate-to-device>
    // Move [start, end) of the process into device memory (dmirror_migrate_to_device). Setup collects the
    // pages and replaces their mappings with migration entries; the driver gives every collected entry a device
    // page holding the same bytes; VmaPages switches what can move; the device table is updated while the pages
    // are still locked; finalize maps the device pages, or the old pages again where nothing moved.
    public (ulong Collected, int Moved) MigrateToDevice(DeviceMemoryDriver device, DevPagemap pagemap, ulong start, ulong end)
    {
        PhysicalMemory memory = _mm.Memory;
        var src = new ulong[(end - start) / PageSize.Bytes];
        var dst = new ulong[src.Length];
        if (!_mm.TryGet())                                  // mmget_not_zero: the process may be exiting
        {
            throw new HmmException(Errno.EINVAL, $"Process {_mm.Name} has exited.");
        }

        try
        {
            using MmapLockGuard mmapLock = _mm.MmapReadLock();     // held from setup to finalize
            Vma vma = _mm.FindVma(start) ?? throw new HmmException(Errno.EINVAL, $"Nothing is mapped at 0x{start:x}.");
            var args = new MigrateVma
            {
                Vma = vma,
                Start = start,
                End = end,                                  // inside vma, or setup throws EINVAL
                Src = src,
                Dst = dst,
                PgmapOwner = _owner,                        // my notifier skips this migration: see Invalidate
                Flags = MigrateVmaSelect.System,            // System RAM pages, and holes as "no page yet"
            };
            Migrate.VmaSetup(ref args);
            try
            {
                for (int i = 0; i < src.Length; i++)
                {
                    if (!MigratePfn.IsMigrating(src[i]) || !device.TryAllocateDevicePage(pagemap, this, out Pfn devicePage))
                    {
                        continue;                           // no destination: this page stays where it is
                    }

                    Span<byte> bytes = memory.PageData(devicePage);
                    bool hasPage = MigratePfn.TryGetPage(src[i], out Pfn ramPage);
                    if (hasPage)
                    {
                        memory.ReadPageData(ramPage).CopyTo(bytes);
                    }
                    else
                    {
                        bytes.Clear();                      // MIGRATE alone: no page yet, the device page starts zeroed
                    }

                    // Writable on the device if it was writable on the CPU, or a hole of a writable area.
                    bool writable = (src[i] & MigratePfn.Write) != 0 || (!hasPage && (vma.Flags & VmFlags.Write) != 0);
                    dst[i] = MigratePfn.FromPfn(devicePage) | (writable ? MigratePfn.Write : 0);
                }
            }
            finally
            {
                // Whatever happened above, every collected page is locked and unmapped until finalize.
                Migrate.VmaPages(ref args);                 // clears MIGRATE where a page cannot move after all
                MapMigratedPages(start, src, dst);
                Migrate.VmaFinalize(ref args);              // unlocks; old pages and unused destinations are freed
            }

            return (args.CPages, src.Count(MigratePfn.IsMigrating));
        }
        finally
        {
            _mm.Put();
        }
    }
    // </snippet:migrate-to-device>

    // <snippet:map-migrated>
    // After VmaPages, MIGRATE in src marks exactly the pages that moved: the device maps their new device pages.
    private void MapMigratedPages(ulong start, ReadOnlySpan<ulong> src, ReadOnlySpan<ulong> dst)
    {
        lock (_update)
        {
            for (int i = 0; i < src.Length; i++)
            {
                if (MigratePfn.IsMigrating(src[i]) && MigratePfn.TryGetPage(dst[i], out Pfn devicePage))
                {
                    ulong write = (dst[i] & MigratePfn.Write) != 0 ? HmmPfn.Write : 0;
                    _devicePageTable[start + ((ulong)i * PageSize.Bytes)] = HmmPfn.Valid | write | devicePage.Value;
                }
            }
        }
    }
    // </snippet:map-migrated>

    /// <summary>
    /// Drops the device's mapping of one page, for the driver's fault path: its migration back to RAM skips this
    /// mirror's invalidation (same owner), so the driver tells the mirror itself.
    /// </summary>
    /// <param name="address">The page's virtual address.</param>
    public void ForgetDevicePage(ulong address)
    {
        lock (_update)
        {
            _devicePageTable.Remove(address);
        }
    }

    /// <summary>Stops mirroring: removes the interval notifier (<c>mmu_interval_notifier_remove</c>) and forgets every device mapping.</summary>
    public void Close()
    {
        _notifier.Remove();
        lock (_update)
        {
            _devicePageTable.Clear();
        }
    }

    // <snippet:snapshot>
    // Read each entry of the snapshot: VALID means the device may map the frame, WRITE that it may write it,
    // ERROR that the page cannot be mirrored; 0 means nothing is there yet. Caller holds _update.
    private void UpdateDevicePageTable(ulong start, ulong end)
    {
        for (ulong address = start; address < end; address += PageSize.Bytes)
        {
            ulong entry = _pfns[(address - start) / PageSize.Bytes];
            if ((entry & HmmPfn.Valid) != 0)
            {
                _devicePageTable[address] = entry;    // HmmPfn.ToPfn(entry) is the frame; HmmPfn.Write its access
            }
            else
            {
                _devicePageTable.Remove(address);
            }
        }
    }
    // </snippet:snapshot>
}
