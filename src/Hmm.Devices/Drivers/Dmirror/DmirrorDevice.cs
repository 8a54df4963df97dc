using Hmm.Devices;

namespace Hmm.Drivers;

/// <summary>
/// The reference mirror driver's device (<c>struct dmirror_device</c> of the kernel's <c>lib/test_hmm.c</c>), on
/// any <see cref="IDeviceBackend"/>: it hands out the device's memory to migrations, moves a device-private page
/// back to System RAM when the CPU touches it (<c>migrate_to_ram</c>), evicts everything before the device goes
/// away, and opens per-process mirrors (<see cref="Open"/>, the open of <c>/dev/hmm_dmirrorN</c>).
/// </summary>
/// <remarks>
/// <para>Two drivers on two devices of one machine see each other's device-private pages as remote: a mirror
/// never collects them for migration and reads them only after the CPU has faulted them back to RAM.</para>
/// <para>Error model: invalid arguments throw <see cref="HmmException"/> (EINVAL) or
/// <see cref="ArgumentNullException"/> before anything changes; the device callbacks return the kernel's
/// <see cref="VmFaultResult"/>.</para>
/// <para>Concurrency model: thread-safe. Mirrors, migrations, CPU faults and evictions may run on any threads at
/// once; pages a concurrent migration holds locked are skipped by an eviction, as in the kernel.</para>
/// </remarks>
public sealed class DmirrorDevice : IDeviceMemoryClient
{
    // Eviction passes over the device before giving up on pages that stay busy (locked by a concurrent
    // migration, or a failed copy): each pass skips only pages someone else holds at that moment.
    private const int EvictionPasses = 8;

    private readonly IDeviceBackend _backend;
    private readonly DmirrorPageOwners _owners;
    private readonly Lock _mirrorsLock = new();
    private Dmirror[] _mirrors = [];
    private long _pagesAllocated;
    private long _pagesFreed;

    /// <summary>
    /// Creates the driver on a device: attaches to its memory as the client that handles CPU faults and freed
    /// pages, and registers a devm action on <see cref="IDeviceBackend.Device"/> that evicts every device page to
    /// System RAM when the device is unbound.
    /// </summary>
    /// <param name="backend">The device.</param>
    /// <exception cref="ArgumentNullException"><paramref name="backend"/> is null.</exception>
    /// <exception cref="HmmException">Error model: invalid state. EBUSY: the device memory already has a client.</exception>
    public DmirrorDevice(IDeviceBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        _backend = backend;
        _owners = new DmirrorPageOwners(backend.Memory);
        backend.LocalMemory.Attach(this);
        backend.Device.AddAction(() =>
        {
            EvictAll();
            return Task.CompletedTask;
        });
    }

    /// <summary>The device the driver runs on.</summary>
    public IDeviceBackend Backend => _backend;

    /// <summary>The machine's memory.</summary>
    public PhysicalMemory Memory => _backend.Memory;

    /// <summary>The pagemap owner of this device's pages (the kernel's <c>pgmap-&gt;owner</c> = the <c>dmirror_device</c>).</summary>
    public object Owner => _backend.LocalMemory.Owner;

    /// <summary>Device pages handed out to migrations so far (the kernel's <c>calloc</c>).</summary>
    public long PagesAllocated => Interlocked.Read(ref _pagesAllocated);

    /// <summary>Device pages that came back to the device's free pool so far (the kernel's <c>cfree</c>).</summary>
    public long PagesFreed => Interlocked.Read(ref _pagesFreed);

    /// <summary>The select flag that collects this device's own pages for a migration back to System RAM.</summary>
    internal MigrateVmaSelect SelectOwnPages =>
        _backend.LocalMemory.Type == MemoryType.DeviceCoherent ? MigrateVmaSelect.DeviceCoherent : MigrateVmaSelect.DevicePrivate;

    /// <summary>
    /// Opens a mirror of <paramref name="mm"/> on this device (open of the device file by the process): a new
    /// device address space and an interval notifier over the whole address space.
    /// </summary>
    /// <param name="mm">The process; alive.</param>
    /// <returns>The mirror; dispose it to close the file.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="mm"/> is null.</exception>
    /// <exception cref="HmmException">Error model: invalid argument. The address space has exited, or belongs to another machine (EINVAL).</exception>
    public Dmirror Open(Mm mm)
    {
        ArgumentNullException.ThrowIfNull(mm);
        if (!ReferenceEquals(mm.Memory, _backend.Memory))
        {
            throw new HmmException(Errno.EINVAL, $"Address space '{mm.Name}' belongs to another machine than device '{_backend.Name}'.");
        }

        if (!mm.IsAlive)
        {
            throw new HmmException(Errno.EINVAL, $"Address space '{mm.Name}' has exited.");
        }

        var mirror = new Dmirror(this, mm);
        lock (_mirrorsLock)
        {
            _mirrors = [.. _mirrors, mirror];
        }

        return mirror;
    }

    /// <summary>
    /// Maps the device file into <paramref name="mm"/> (the driver's <c>mmap</c>): a private, readable and writable
    /// mixed-map area in which every page is a freshly zeroed System RAM page inserted with
    /// <see cref="Mm.InsertPage"/> (<c>vm_insert_page</c>). The CPU sees the pages read-only (copy-on-write); a
    /// mirror's snapshot reports them as ordinary read-only pages, and migration refuses the area.
    /// </summary>
    /// <param name="mm">The process.</param>
    /// <param name="pages">The area's length in pages, at least one.</param>
    /// <returns>The area's address.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="mm"/> is null.</exception>
    /// <exception cref="HmmException">
    /// Error model: the mmap's error, nothing left mapped. EINVAL: zero pages, a length that overflows, or an
    /// address space of another machine; ENOMEM: no System RAM page, or no room for the area; the other errors
    /// of <see cref="Mm.MmapSpecial"/>.
    /// </exception>
    public ulong MmapDeviceFile(Mm mm, ulong pages)
    {
        ArgumentNullException.ThrowIfNull(mm);
        if (pages == 0 || pages > (Mm.TaskSize >> PageSize.Shift))
        {
            throw new HmmException(Errno.EINVAL, $"Cannot map {pages} pages of the device file.");
        }

        if (!ReferenceEquals(mm.Memory, _backend.Memory))
        {
            throw new HmmException(Errno.EINVAL, $"Address space '{mm.Name}' belongs to another machine than device '{_backend.Name}'.");
        }

        ulong length = pages << PageSize.Shift;
        ulong address = mm.MmapSpecial(0, length, Protection.ReadWrite, MapFlags.Private, VmFlags.MixedMap);
        Errno error = InsertZeroedPages(mm, address, length);
        if (error != Errno.None)
        {
            mm.Munmap(address, length);     // the failed mmap leaves nothing behind
            throw new HmmException(error, $"Mapping the device file of '{_backend.Name}' failed: {error}.");
        }

        return address;
    }

    /// <summary>
    /// A CPU access faulted on one of this device's private pages (<c>dmirror_devmem_fault</c>): the page moves to
    /// a new System RAM page, and every mirror of this device drops its entry for the address (the driver's own
    /// migration skips their invalidation callbacks). Charges <see cref="DeviceTiming.CpuFaultLatency"/> and the copy.
    /// </summary>
    /// <param name="fault">The faulting access; its page is locked and referenced by the fault path.</param>
    /// <returns>
    /// Error model: the kernel's <c>vm_fault_t</c>. <see cref="VmFaultResult.None"/> once the page is back (or
    /// another thread moved it first); <see cref="VmFaultResult.Sigbus"/> when the migration cannot be set up or
    /// the copy failed; <see cref="VmFaultResult.Oom"/> when no System RAM page is free, or when the mirror that
    /// migrated the page had <see cref="DmirrorFlags.FailAllocation"/> set (consumed here): the page stays on the
    /// device with its data, and the CPU access fails with ENOMEM.
    /// </returns>
    public VmFaultResult MigrateToRam(in DevicePrivateFault fault)
    {
        PhysicalMemory memory = _backend.Memory;
        ulong address = fault.Address & PageSize.Mask;
        Span<ulong> src = stackalloc ulong[1];
        Span<ulong> dst = stackalloc ulong[1];
        var args = new MigrateVma
        {
            Vma = fault.Vma,
            Start = address,
            End = address + PageSize.Bytes,
            Src = src,
            Dst = dst,
            PgmapOwner = Owner,
            Flags = SelectOwnPages,
            FaultPage = fault.Page,
        };

        try
        {
            Migrate.VmaSetup(ref args);
        }
        catch (HmmException)
        {
            return VmFaultResult.Sigbus;
        }

        _backend.Clock.Advance(_backend.Timing.CpuFaultLatency);
        VmFaultResult result = VmFaultResult.None;
        try
        {
            if (MigratePfn.IsMigrating(src[0]) && MigratePfn.TryGetPage(src[0], out Pfn devicePage))
            {
                // The page's mirror (the kernel's rpage->zone_device_data) may hold the one-shot allocation
                // failure; it fails the RAM allocation like a real shortage. Unlike the kernel, which returns
                // before migrate_vma_pages, the finally below still restores the page.
                if (_owners.Get(devicePage)?.TakeFailAllocation() == true || !memory.TryAllocatePage(out Pfn ram))
                {
                    result = VmFaultResult.Oom;
                }
                else
                {
                    memory.LockPage(ram);
                    _owners.Get(devicePage)?.ErasePage(address);
                    EraseInMirrors(fault.Mm, null, address, src, dst: default);
                    if (Copy([devicePage], [ram]) != Errno.None)
                    {
                        ReleaseUnused(ram);
                        result = VmFaultResult.Sigbus;  // a DMA error: the page stays on the device
                    }
                    else
                    {
                        dst[0] = MigratePfn.FromPfn(ram) | (src[0] & MigratePfn.Write);
                    }
                }
            }
        }
        finally
        {
            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
        }

        return result;
    }

    /// <summary>The last reference to one of this device's pages was put (<c>dmirror_devmem_free</c>): counts it and forgets its owner.</summary>
    /// <param name="page">The freed page, already back in the device's free pool.</param>
    public void PageFreed(Pfn page)
    {
        _owners.Set(page, null);
        Interlocked.Increment(ref _pagesFreed);
    }

    /// <summary>The mirror that migrated a device page, for tests and diagnostics (the kernel's <c>rpage-&gt;zone_device_data</c>).</summary>
    internal Dmirror? OwnerOf(Pfn page) => _owners.Get(page);

    /// <summary>Allocates locked device pages as migration destinations and records their mirror.</summary>
    internal int Allocate(Span<Pfn> pages, Dmirror owner)
    {
        int count = _backend.LocalMemory.Allocate(pages);
        for (int i = 0; i < count; i++)
        {
            _owners.Set(pages[i], owner);
        }

        Interlocked.Add(ref _pagesAllocated, count);
        return count;
    }

    /// <summary>Copies frames through the device's copy engine and waits for the copy on the virtual clock.</summary>
    /// <returns><see cref="Errno.None"/>, or <see cref="Errno.EIO"/> when the transfer failed and nothing was copied.</returns>
    internal Errno Copy(ReadOnlySpan<Pfn> source, ReadOnlySpan<Pfn> destination)
    {
        if (source.IsEmpty)
        {
            return Errno.None;
        }

        Errno error = _backend.CopyEngine.Copy(source, destination, out CopyCompletion completion);
        if (error == Errno.None)
        {
            _backend.Clock.AdvanceTo(completion.End);
        }

        return error;
    }

    /// <summary>Gives back a locked destination page that did not get used: unlocks it and drops the only reference.</summary>
    internal void ReleaseUnused(Pfn page)
    {
        _backend.Memory.UnlockPage(page);
        _backend.Memory.PutPage(page);
    }

    /// <summary>
    /// Drops, in every open mirror of this device on <paramref name="mm"/> except <paramref name="except"/>, the
    /// entries of the pages of <c>[start, ...)</c> whose <paramref name="src"/> entry migrates (and, when
    /// <paramref name="dst"/> is given, has a destination). The driver's own migrations skip the mirrors'
    /// invalidation callbacks, so the driver updates them itself.
    /// </summary>
    internal void EraseInMirrors(Mm mm, Dmirror? except, ulong start, ReadOnlySpan<ulong> src, ReadOnlySpan<ulong> dst)
    {
        Dmirror[] mirrors = Volatile.Read(ref _mirrors);
        foreach (Dmirror mirror in mirrors)
        {
            if (!ReferenceEquals(mirror, except) && ReferenceEquals(mirror.Mm, mm))
            {
                mirror.EraseMigrating(start, src, dst);
            }
        }
    }

    /// <summary>Forgets a closed mirror.</summary>
    internal void Unregister(Dmirror mirror)
    {
        lock (_mirrorsLock)
        {
            int index = Array.IndexOf(_mirrors, mirror);
            if (index >= 0)
            {
                Dmirror[] mirrors = new Dmirror[_mirrors.Length - 1];
                Array.Copy(_mirrors, 0, mirrors, 0, index);
                Array.Copy(_mirrors, index + 1, mirrors, index, mirrors.Length - index);
                _mirrors = mirrors;
            }
        }

        _owners.Forget(mirror);
    }

    /// <summary>
    /// Moves every page of the device that is in use back to System RAM, whoever maps it
    /// (<c>dmirror_device_remove_chunks</c> / <c>dmirror_device_evict_chunk</c>), chunk by chunk by PFN: the mappings
    /// are found through the reverse map, the mirrors hear a clear invalidation, and the data is copied through the
    /// copy engine. The device keeps its memory (nothing is unregistered); later migrations allocate from it again.
    /// </summary>
    /// <returns>How many pages moved.</returns>
    internal long EvictAll()
    {
        IDeviceMemory local = _backend.LocalMemory;
        int chunkPages = local.ChunkPages;
        var src = new ulong[chunkPages];
        var dst = new ulong[chunkPages];
        var from = new Pfn[chunkPages];
        var to = new Pfn[chunkPages];
        long moved = 0;
        for (int pass = 0; pass < EvictionPasses; pass++)
        {
            bool busy = false;
            IReadOnlyList<DevPagemap> pagemaps = local.Pagemaps;
            for (int p = 0; p < pagemaps.Count; p++)
            {
                if (pagemaps[p].State != DevPagemapState.Live)
                {
                    continue;       // being torn down or gone: its pages are the pagemap's teardown's business
                }

                IReadOnlyList<PhysicalRange> ranges = pagemaps[p].Ranges;
                for (int r = 0; r < ranges.Count; r++)
                {
                    PhysicalRange range = ranges[r];
                    for (ulong offset = 0; offset < range.PageCount; offset += (ulong)chunkPages)
                    {
                        int count = (int)Math.Min((ulong)chunkPages, range.PageCount - offset);
                        moved += EvictChunk(range.StartPfn + offset, src.AsSpan(0, count), dst.AsSpan(0, count), from, to, ref busy);
                    }
                }
            }

            if (!busy)
            {
                break;
            }

            Thread.Yield();
        }

        return moved;
    }

    // One chunk: collect the pages in use, give each a locked RAM page, copy in one batch, move, finalize. A page
    // left behind (its lock contended, no RAM page, a failed copy) sets busy so that the caller makes another pass.
    private long EvictChunk(Pfn first, Span<ulong> src, Span<ulong> dst, Pfn[] from, Pfn[] to, ref bool busy)
    {
        PhysicalMemory memory = _backend.Memory;
        Migrate.DeviceRange(memory, src, first);
        dst.Clear();
        int copies = 0;
        for (int i = 0; i < src.Length; i++)
        {
            if (!MigratePfn.IsMigrating(src[i]) || !MigratePfn.TryGetPage(src[i], out Pfn devicePage))
            {
                if (src[i] == 0 && memory.Page(first + (ulong)i).RefCount > 0)
                {
                    busy = true;    // in use but not collected: held by someone else right now
                }

                continue;
            }

            if (!memory.TryAllocatePage(out Pfn ram))
            {
                busy = true;        // the kernel allocates with __GFP_NOFAIL; here the page stays, mapped as before
                continue;
            }

            memory.LockPage(ram);
            from[copies] = devicePage;
            to[copies] = ram;
            copies++;
            dst[i] = MigratePfn.FromPfn(ram) | (src[i] & MigratePfn.Write);
        }

        if (Copy(from.AsSpan(0, copies), to.AsSpan(0, copies)) != Errno.None)
        {
            for (int i = 0; i < copies; i++)
            {
                ReleaseUnused(to[i]);
            }

            dst.Clear();            // nothing moves: finalize restores every mapping of the device pages
            busy = true;
        }

        Migrate.DevicePages(memory, src, dst);
        long moved = 0;
        for (int i = 0; i < src.Length; i++)
        {
            if (MigratePfn.IsMigrating(src[i]) && dst[i] != 0)
            {
                moved++;
            }
        }

        Migrate.DeviceFinalize(memory, src, dst);
        TraceEmitter trace = memory.Trace;
        if (moved > 0 && trace.IsEnabled)
        {
            trace.Emit(TraceEvent.Evict(_backend.Device.TraceId, first.Value, (ulong)moved, _backend.Clock.Now));
        }

        return moved;
    }

    // The mmap handler: runs with the mmap lock held for writing, as the kernel calls it.
    private Errno InsertZeroedPages(Mm mm, ulong address, ulong length)
    {
        PhysicalMemory memory = _backend.Memory;
        using MmapLockGuard guard = mm.MmapWriteLock();
        Vma vma = mm.FindVma(address) ?? throw new KernelBugException($"The device file's new area at 0x{address:x} is gone.");
        for (ulong offset = 0; offset < length; offset += PageSize.Bytes)
        {
            if (!memory.TryAllocatePage(out Pfn page))
            {
                return Errno.ENOMEM;
            }

            if (memory.StoresPageData)
            {
                memory.PageData(page).Clear();
            }

            Errno error = mm.InsertPage(vma, address + offset, page);
            memory.PutPage(page);       // the mapping holds its own reference now, or the page is freed
            if (error != Errno.None)
            {
                return error;
            }
        }

        return Errno.None;
    }
}
