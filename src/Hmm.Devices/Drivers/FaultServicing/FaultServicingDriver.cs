using Hmm.Devices;

namespace Hmm.Drivers;

/// <summary>
/// A UVM-style fault-servicing driver on the device interface (what NVIDIA's <c>nvidia-uvm</c> does with HMM, reduced
/// to its skeleton): it fetches replayable device faults in batches, groups them by 2 MiB virtual block, asks an
/// <see cref="IResidencyPolicy"/> which pages to migrate, moves them into device memory with <c>migrate_vma</c>
/// (evicting least recently used blocks by PFN when memory is full), maps them in the device page table of the
/// process's <see cref="GpuVaSpace"/>, maps pages that cannot move where they are (from <c>hmm_range_fault</c>), and
/// replays. CPU faults on its pages come back through <see cref="MigrateToRam"/>.
/// </summary>
/// <remarks>
/// <para>Lock rules (outermost first): <c>_serviceLock</c> serialises batch servicing, eviction, detach and the
/// unbind eviction; a space's update lock (see <see cref="GpuVaSpace"/>); <c>_lock</c>, the metadata lock, guards
/// the block table, the spaces' block dictionaries, the policy and device allocation. <c>_lock</c> is held only
/// briefly and never while calling into the core's fault or migration paths, the copy engine or a device page
/// table, because those paths call back into <see cref="PageFreed"/> and <see cref="MigrateToRam"/>, which take it.
/// Device pages are allocated under <c>_lock</c> so that a late <see cref="PageFreed"/> for a page already handed
/// out again is recognised (see <see cref="AllocateLocked"/>).</para>
/// <para>Threads: one thread at a time services batches (others wait on <c>_serviceLock</c>); CPU faults
/// (<see cref="MigrateToRam"/>), frees (<see cref="PageFreed"/>) and invalidations come from any thread meanwhile.</para>
/// <para>Error model: invalid arguments throw <see cref="HmmException"/> (EINVAL), a second attachment of one
/// process EBUSY, use after the device was unbound ENODEV; device-side failures (no device memory, a failed copy,
/// an unmapped or protected address) are not errors of the call: the affected faults stay where they are, or are
/// counted as unserviceable, in <see cref="Statistics"/>.</para>
/// </remarks>
public sealed partial class FaultServicingDriver : IDeviceMemoryClient
{
    /// <summary>Pages per virtual block (2 MiB of 4 KiB pages), the unit the driver groups faults and evicts by.</summary>
    public const int BlockPages = VaBlockTable.Pages;

    private readonly IDeviceBackend _device;
    private readonly IResidencyPolicy _policy;
    private readonly PhysicalMemory _memory;
    // Outermost: one batch, eviction, detach or unbind eviction at a time; also guards the scratch arrays, the
    // RAM-mapped masks and block creation. Taken before a space's update lock and before _lock.
    private readonly Lock _serviceLock = new();

    // Innermost (a leaf but for the policy and device allocation, which call nothing back): the block table, the
    // spaces' block dictionaries, the policy, Allocate. Never held while calling the core, the copy engine or a
    // device page table: PageFreed takes it from inside the core's free path.
    private readonly Lock _lock = new();
    private readonly VaBlockTable _blocks = new();   // guarded by _lock
    private GpuVaSpace?[] _spaces = [];   // copy on write under _lock, read lock-free; indexed by slot
    private int _unbound;

    /// <summary>
    /// Creates the driver for one device: attaches to its memory (<see cref="IDeviceMemory.Attach"/>) and registers a
    /// devm action on <see cref="IDeviceBackend.Device"/> that evicts every device page before the device's memory
    /// goes away.
    /// </summary>
    /// <param name="device">The device.</param>
    /// <param name="policy">The residency policy; null for a new <see cref="LruResidencyPolicy"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="device"/> is null.</exception>
    /// <exception cref="HmmException">EBUSY: the device memory already has a client; ENODEV: the device is unbinding. Nothing is attached.</exception>
    public FaultServicingDriver(IDeviceBackend device, IResidencyPolicy? policy = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (!device.Device.IsBound)
        {
            throw new HmmException(Errno.ENODEV, $"Device {device.Name} is unbinding.");
        }

        _device = device;
        _memory = device.Memory;
        _policy = policy ?? new LruResidencyPolicy();
        Owner = device.LocalMemory.Owner;
        int batch = device.Faults.BatchSize;
        _faults = new DeviceFault[batch];
        _keys = new ulong[batch];
        _order = new int[batch];
        device.LocalMemory.Attach(this);
        device.Device.AddAction(EvictAllAtUnbind);
    }

    /// <summary>The device this driver serves.</summary>
    public IDeviceBackend Device => _device;

    /// <summary>The residency policy.</summary>
    public IResidencyPolicy Policy => _policy;

    /// <summary>The counters of this driver.</summary>
    public FaultServicingStatistics Statistics { get; } = new();

    /// <summary>Pages of this device's memory that hold process data now (as the driver accounts them).</summary>
    public long ResidentPages
    {
        get
        {
            lock (_lock)
            {
                long pages = 0;
                for (int id = 0; id < _blocks.HighWater; id++)
                {
                    if (_blocks.IsLive(id))
                    {
                        pages += _blocks.ResidentCount(id);
                    }
                }

                return pages;
            }
        }
    }

    /// <summary>The pagemap owner of this device's pages (<see cref="IDeviceMemory.Owner"/>).</summary>
    internal object Owner { get; }

    /// <summary>
    /// Creates the GPU address space that mirrors <paramref name="mm"/> (<c>uvm_va_space</c> registration with HMM):
    /// a device address space, with device virtual address == CPU virtual address, and an interval notifier over the
    /// whole process.
    /// </summary>
    /// <param name="mm">A live process.</param>
    /// <returns>The address space; dispose it to detach.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="mm"/> is null.</exception>
    /// <exception cref="HmmException">
    /// EINVAL: a process of another machine, or one that has exited; EBUSY: the process is already attached to this
    /// driver, or 4095 address spaces are; ENODEV: the device was unbound. Nothing changes.
    /// </exception>
    public GpuVaSpace Attach(Mm mm)
    {
        ArgumentNullException.ThrowIfNull(mm);
        ThrowIfUnbound();
        if (!ReferenceEquals(mm.Memory, _memory))
        {
            throw new HmmException(Errno.EINVAL, $"Process {mm.Name} belongs to another machine than device {_device.Name}.");
        }

        if (!mm.IsAlive)
        {
            throw new HmmException(Errno.EINVAL, $"Process {mm.Name} has exited.");
        }

        lock (_serviceLock)
        {
            int slot;
            lock (_lock)
            {
                slot = -1;
                for (int i = 0; i < _spaces.Length; i++)
                {
                    GpuVaSpace? space = _spaces[i];
                    if (space is null)
                    {
                        slot = slot < 0 ? i : slot;
                    }
                    else if (ReferenceEquals(space.Mm, mm))
                    {
                        throw new HmmException(Errno.EBUSY, $"Process {mm.Name} is already attached to device {_device.Name}.");
                    }
                }

                slot = slot < 0 ? _spaces.Length : slot;
                if (slot >= MaxSpaces)
                {
                    throw new HmmException(Errno.EBUSY, $"Device {_device.Name} already serves {MaxSpaces} address spaces.");
                }
            }

            IDeviceAddressSpace deviceSpace = _device.CreateAddressSpace($"{_device.Name}:{mm.Name}");
            var created = new GpuVaSpace(this, mm, deviceSpace, slot);
            lock (_lock)
            {
                GpuVaSpace?[] spaces = _spaces;
                if (slot >= spaces.Length)
                {
                    Array.Resize(ref spaces, slot + 1);
                }
                else
                {
                    spaces = (GpuVaSpace?[])spaces.Clone();
                }

                spaces[slot] = created;
                Volatile.Write(ref _spaces, spaces);
            }

            return created;
        }
    }

    /// <summary>
    /// The CPU touched one of this device's private pages (<c>dev_pagemap_ops.migrate_to_ram</c>): moves that one page
    /// back to System RAM through the copy engine, after removing the device's mapping of it and flushing the TLB.
    /// Charges <see cref="DeviceTiming.CpuFaultLatency"/> and the copy on the clock.
    /// </summary>
    /// <param name="fault">The fault; the fault path holds the page locked and referenced, and the mmap lock.</param>
    /// <returns>
    /// <see cref="VmFaultResult.None"/> when the page moved or was already gone (the access retries);
    /// <see cref="VmFaultResult.Oom"/> when no RAM page was free; <see cref="VmFaultResult.Sigbus"/> when the copy
    /// failed or the migration could not start. The page stays on the device in both error cases.
    /// </returns>
    public VmFaultResult MigrateToRam(in DevicePrivateFault fault)
    {
        _device.Clock.Advance(_device.Timing.CpuFaultLatency);
        Span<ulong> src = stackalloc ulong[1];
        Span<ulong> dst = stackalloc ulong[1];
        var args = new MigrateVma
        {
            Vma = fault.Vma,
            Start = fault.Address,
            End = fault.Address + PageSize.Bytes,
            Src = src,
            Dst = dst,
            PgmapOwner = Owner,
            Flags = MigrateVmaSelect.DevicePrivate,
            FaultPage = fault.Page,
        };

        try
        {
            Migrate.VmaSetup(ref args);
        }
        catch (HmmException)
        {
            Statistics.AddCpuFault(moved: false);
            return VmFaultResult.Sigbus;
        }

        VmFaultResult result = VmFaultResult.None;
        if (MigratePfn.IsMigrating(src[0]) && MigratePfn.TryGetPage(src[0], out Pfn devicePage))
        {
            // This migration's own notifier event is skipped (same owner): drop the device mapping before the copy,
            // so the device cannot write the page after its bytes were read.
            SpaceOf(fault.Mm)?.Unmap(fault.Address, PageSize.Bytes);
            if (!_memory.TryAllocatePage(out Pfn ram))
            {
                result = VmFaultResult.Oom;
            }
            else
            {
                _memory.LockPage(ram);
                Errno copied = _device.CopyEngine.Copy([devicePage], [ram], out CopyCompletion completion);
                if (copied == Errno.None)
                {
                    _device.Clock.AdvanceTo(completion.End);
                    dst[0] = MigratePfn.FromPfn(ram) | (src[0] & MigratePfn.Write);
                }
                else
                {
                    Statistics.AddCopyFailure();
                    _memory.UnlockPage(ram);
                    _memory.PutPage(ram);
                    result = VmFaultResult.Sigbus;
                }
            }
        }

        Migrate.VmaPages(ref args);
        bool moved = MigratePfn.IsMigrating(src[0]) && dst[0] != 0;
        Migrate.VmaFinalize(ref args);
        Statistics.AddCpuFault(moved);
        return result;
    }

    /// <summary>
    /// The last reference to one of this device's pages went (<c>folio_free</c>, after the device took it back):
    /// forgets the page in its block if the block still records it.
    /// </summary>
    /// <param name="page">The freed page.</param>
    public void PageFreed(Pfn page)
    {
        lock (_lock)
        {
            // Handed out again already (its allocation, under this lock, forgot the old owner): nothing to do.
            if (_memory.PageRefCount(page) != 0)
            {
                return;
            }

            ForgetLocked(page);
        }
    }

    /// <summary>Whether the device was unbound (its memory is gone; the driver serves nothing any more).</summary>
    public bool IsUnbound => Volatile.Read(ref _unbound) != 0;

    private const int MaxSpaces = 4095;

    private void ThrowIfUnbound()
    {
        if (IsUnbound)
        {
            throw new HmmException(Errno.ENODEV, $"Device {_device.Name} was unbound.");
        }
    }

    private GpuVaSpace? SpaceOf(Mm mm)
    {
        GpuVaSpace?[] spaces = Volatile.Read(ref _spaces);
        foreach (GpuVaSpace? space in spaces)
        {
            if (space is not null && ReferenceEquals(space.Mm, mm))
            {
                return space;
            }
        }

        return null;
    }

    private GpuVaSpace? SpaceOf(IDeviceAddressSpace deviceSpace)
    {
        GpuVaSpace?[] spaces = Volatile.Read(ref _spaces);
        foreach (GpuVaSpace? space in spaces)
        {
            if (space is not null && ReferenceEquals(space.Space, deviceSpace))
            {
                return space;
            }
        }

        return null;
    }

    /// <summary>Clears the block slot a device page's zone-device word names, if it still holds that page. Caller holds _lock.</summary>
    private void ForgetLocked(Pfn page)
    {
        if (!VaBlockTable.TryDecode(_memory.Page(page).ZoneDeviceData, out int id, out int index) || !_blocks.IsLive(id))
        {
            return;
        }

        if (_blocks.ClearResident(id, index, page, out _))
        {
            _policy.BlockEmptied(id);
            if (_blocks.SpaceOf(id) is null)
            {
                _blocks.Release(id);   // orphaned by a detach: its last page is gone
            }
        }
    }

    /// <summary>Detach (from <see cref="GpuVaSpace.Dispose"/>): evict, unmap, forget the space.</summary>
    internal void Detach(GpuVaSpace space)
    {
        lock (_serviceLock)
        {
            space.NotifierSubscription.Remove();
            if (!IsUnbound)
            {
                List<int> ids;
                lock (_lock)
                {
                    ids = [.. space.Blocks.Values];
                }

                foreach (int id in ids)
                {
                    EvictBlock(id);
                }
            }

            space.UnmapAll();
            lock (_lock)
            {
                foreach (int id in space.Blocks.Values)
                {
                    if (_blocks.ResidentCount(id) == 0)
                    {
                        _blocks.Release(id);
                    }
                    else
                    {
                        _blocks.Orphan(id);
                    }
                }

                space.Blocks.Clear();
                GpuVaSpace?[] spaces = (GpuVaSpace?[])_spaces.Clone();
                spaces[space.Slot] = null;
                Volatile.Write(ref _spaces, spaces);
            }
        }
    }

    // The devm action: before the device's pagemaps are torn down, every page in use goes back to RAM.
    private Task EvictAllAtUnbind()
    {
        lock (_serviceLock)
        {
            int highWater;
            lock (_lock)
            {
                highWater = _blocks.HighWater;
            }

            for (int id = 0; id < highWater; id++)
            {
                EvictBlock(id);
            }

            Volatile.Write(ref _unbound, 1);
        }

        return Task.CompletedTask;
    }
}
