using Hmm.Devices;

namespace Hmm.Drivers;

/// <summary>
/// A GPU virtual address space that mirrors one process (<c>uvm_va_space_t</c> with HMM): device virtual address ==
/// CPU virtual address. It owns a device page table (<see cref="Space"/>) and one interval notifier over the whole
/// address space, whose invalidate callback removes the device mappings of the range and flushes the device TLB
/// before the CPU page tables change. Created by <see cref="FaultServicingDriver.Attach"/>.
/// </summary>
/// <remarks>
/// <para>Lock rules: <c>_update</c> is the lock the notifier's invalidate takes (the sequence protocol of
/// <c>Documentation/mm/hmm.rst</c>): it is held while the device page table is programmed from a snapshot, so the
/// snapshot's sequence can be re-checked. It may be taken before the driver's metadata lock, never after it, and is
/// never held while calling into the core's fault or migration paths.</para>
/// <para>Error model: <see cref="Dispose"/> is idempotent and never throws for state.</para>
/// </remarks>
public sealed class GpuVaSpace : IDisposable
{
    private readonly FaultServicingDriver _driver;
    private readonly Lock _update = new();
    private readonly Notifier _ops;
    private ulong _lowMapped = ulong.MaxValue;   // guarded by _update: the span ever mapped, to bound unmaps
    private ulong _highMapped;
    private int _disposed;

    internal GpuVaSpace(FaultServicingDriver driver, Mm mm, IDeviceAddressSpace space, int slot)
    {
        _driver = driver;
        Mm = mm;
        Space = space;
        Slot = slot;
        _ops = new Notifier(this);
        NotifierSubscription = MmuIntervalNotifier.Insert(mm, 0, ulong.MaxValue, _ops);
    }

    /// <summary>The mirrored process.</summary>
    public Mm Mm { get; }

    /// <summary>The device page table: device virtual address == CPU virtual address.</summary>
    public IDeviceAddressSpace Space { get; }

    /// <summary>The driver that serves this address space.</summary>
    public FaultServicingDriver Driver => _driver;

    /// <summary>Whether <see cref="Dispose"/> ran.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    internal int Slot { get; }

    internal MmuIntervalNotifier NotifierSubscription { get; }

    /// <summary>The blocks of this space: 2 MiB block number to block id. Guarded by the driver's metadata lock.</summary>
    internal Dictionary<ulong, int> Blocks { get; } = [];

    internal Lock UpdateLock => _update;

    /// <summary>
    /// Detaches the address space from the device: removes the interval notifier, moves this process's pages out of
    /// device memory, and clears the device page table. Pages the eviction could not move stay on the device, and
    /// CPU faults still bring them back. Safe to call more than once.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _driver.Detach(this);
        }
    }

    /// <summary>Removes every device mapping of this space and flushes the TLB (detach); the caller serialises with servicing.</summary>
    internal void UnmapAll()
    {
        lock (_update)
        {
            if (_lowMapped < _highMapped && Space.Unmap(_lowMapped, _highMapped - _lowMapped) > 0)
            {
                Space.InvalidateTlb(_lowMapped, _highMapped - _lowMapped);
            }
        }
    }

    /// <summary>Maps device pages; caller holds <see cref="UpdateLock"/>.</summary>
    internal void MapLocked(ulong address, ReadOnlySpan<Pfn> pages, DevicePteFlags flags)
    {
        Space.Map(address, pages, flags);
        _lowMapped = Math.Min(_lowMapped, address);
        _highMapped = Math.Max(_highMapped, address + ((ulong)pages.Length * PageSize.Bytes));
    }

    /// <summary>Unmaps a range and flushes the TLB if anything was mapped; returns the entries removed.</summary>
    internal long Unmap(ulong address, ulong length)
    {
        long removed = Space.Unmap(address, length);
        if (removed > 0)
        {
            Space.InvalidateTlb(address, length);
        }

        return removed;
    }

    // The invalidate callback: kept in a private class so that it is not part of the public surface.
    private bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
    {
        // Migrations this driver started (to the device, or migrate_to_ram) and its own make_device_exclusive update
        // the device table themselves.
        if ((range.Event == MmuNotifierEvent.Migrate || range.Event == MmuNotifierEvent.Exclusive) && ReferenceEquals(range.Owner, _driver.Owner))
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
            subscription.SetSequence(currentSequence);
            ulong start = Math.Max(range.Start, _lowMapped);
            ulong end = Math.Min(range.End, _highMapped);
            if (start < end && Unmap(start, end - start) > 0)
            {
                _driver.Statistics.AddInvalidation();
            }
        }
        finally
        {
            _update.Exit();
        }

        return true;
    }

    private sealed class Notifier(GpuVaSpace space) : IMmuIntervalNotifierOps
    {
        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence) =>
            space.Invalidate(subscription, range, currentSequence);
    }
}
