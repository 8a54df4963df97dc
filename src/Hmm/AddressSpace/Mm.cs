using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;

namespace Hmm;

/// <summary>
/// A simulated process address space (<c>struct mm_struct</c>): its areas, its 4-level page table, its mmap
/// lock, and the notifier subscriptions that mirror it into devices.
/// </summary>
/// <remarks>
/// <para>Lock order, outermost first: the mmap lock (<see cref="MmapReadLock"/>/<see cref="MmapWriteLock"/>,
/// the kernel's <c>mmap_lock</c>: shared for faults, CPU access, mirroring and migration; exclusive for
/// mmap, munmap, mprotect, mremap, madvise, fork and exit), then a page lock, then a PTE table's lock (held
/// only to read-check-change entries, never across a callback). Notifier callbacks and a pagemap's
/// <c>migrate_to_ram</c> run with the mmap lock held and no PTE lock held.</para>
/// <para>Lifetime: the process owns one user reference (<c>mm_users</c>); drivers take more with
/// <see cref="TryGet"/>. The address space is torn down (<c>exit_mmap</c>) when the last is put. Every entry
/// point fails with <see cref="Errno.ESRCH"/> afterwards.</para>
/// </remarks>
[SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable", Justification = "The mmap lock lives as long as the address space object; threads may still be releasing it after exit, so it is never disposed.")]
public sealed partial class Mm
{
    /// <summary>The top of user space (<c>TASK_SIZE</c> on x86-64 with 4-level paging: 2^47).</summary>
    public const ulong TaskSize = 1UL << 47;

    /// <summary>The lowest address mmap hands out without a fixed address (<c>mmap_min_addr</c>).</summary>
    public const ulong MinimumAddress = 0x10000;

    private readonly ReaderWriterLockSlim _mmapLock = new(LockRecursionPolicy.NoRecursion);
    private readonly VmaTree _vmas = new();
    private readonly PageTable _pageTable = new();
    private IMmNotifierChain? _notifiers;
    private int _users = 1;

    /// <summary>Creates an empty address space.</summary>
    /// <param name="memory">The physical memory its pages come from.</param>
    /// <param name="name">A name for diagnostics, like a process name.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public Mm(PhysicalMemory memory, string name = "process")
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(name);
        Memory = memory;
        Name = name;
        Logger = memory.Logger;
    }

    /// <summary>The physical memory backing this address space.</summary>
    public PhysicalMemory Memory { get; }

    /// <summary>The name given at creation.</summary>
    public string Name { get; }

    /// <summary>Whether user references remain (<c>mm_users &gt; 0</c>).</summary>
    public bool IsAlive => Volatile.Read(ref _users) > 0;

    /// <summary>How many areas the address space has (<c>map_count</c>).</summary>
    public int VmaCount
    {
        get
        {
            using MmapLockGuard guard = MmapReadLock();
            return _vmas.Count;
        }
    }

    internal ILogger Logger { get; }

    internal PageTable PageTable => _pageTable;

    internal VmaTree Vmas => _vmas;

    /// <summary>The notifier subscriptions, once the mirroring layer has created them.</summary>
    internal IMmNotifierChain? Notifiers => Volatile.Read(ref _notifiers);

    /// <summary>Takes the mmap lock shared (<c>mmap_read_lock</c>). Dispose the guard to release it, on the same thread.</summary>
    /// <returns>The guard.</returns>
    /// <exception cref="HmmException">Error model: invalid arguments or state, with the kernel's errno. <see cref="Errno.ESRCH"/>: the address space has exited.</exception>
    public MmapLockGuard MmapReadLock()
    {
        _mmapLock.EnterReadLock();
        if (!IsAlive)
        {
            _mmapLock.ExitReadLock();
            ThrowExited();
        }

        return new MmapLockGuard(_mmapLock, write: false);
    }

    /// <summary>Takes the mmap lock exclusive (<c>mmap_write_lock</c>). Dispose the guard to release it, on the same thread.</summary>
    /// <returns>The guard.</returns>
    /// <exception cref="HmmException">Error model: invalid arguments or state, with the kernel's errno. <see cref="Errno.ESRCH"/>: the address space has exited.</exception>
    public MmapLockGuard MmapWriteLock()
    {
        _mmapLock.EnterWriteLock();
        if (!IsAlive)
        {
            _mmapLock.ExitWriteLock();
            ThrowExited();
        }

        return new MmapLockGuard(_mmapLock, write: true);
    }

    /// <summary>Whether the calling thread holds the mmap lock, shared or exclusive (<c>mmap_assert_locked</c>).</summary>
    public bool IsMmapLockHeld => _mmapLock.IsReadLockHeld || _mmapLock.IsWriteLockHeld;

    /// <summary>Takes a user reference unless the address space has exited (<c>mmget_not_zero</c>).</summary>
    /// <returns>False once exited.</returns>
    public bool TryGet()
    {
        int users = Volatile.Read(ref _users);
        while (users > 0)
        {
            int seen = Interlocked.CompareExchange(ref _users, users + 1, users);
            if (seen == users)
            {
                return true;
            }

            users = seen;
        }

        return false;
    }

    /// <summary>Drops a user reference (<c>mmput</c>); the last one tears the address space down.</summary>
    /// <exception cref="KernelBugException">More puts than references.</exception>
    public void Put()
    {
        int users = Interlocked.Decrement(ref _users);
        if (users < 0)
        {
            Interlocked.Increment(ref _users);
            ThrowHelper.ThrowBug($"mmput below zero on address space '{Name}'.");
        }

        if (users == 0)
        {
            ExitMmap();
        }
    }

    /// <summary>The process exits: drops its own user reference (<see cref="Put"/>).</summary>
    public void Exit() => Put();

    /// <summary>A snapshot of the areas, in address order.</summary>
    /// <returns>The areas.</returns>
    /// <exception cref="HmmException">Error model: invalid arguments or state, with the kernel's errno. <see cref="Errno.ESRCH"/>: the address space has exited.</exception>
    public IReadOnlyList<Vma> Areas()
    {
        using MmapLockGuard guard = MmapReadLock();
        return _vmas.Snapshot();
    }

    /// <summary>The area containing <paramref name="address"/>, or null. Caller holds the mmap lock (<c>vma_lookup</c>).</summary>
    /// <param name="address">Any address.</param>
    /// <returns>The area or null.</returns>
    /// <exception cref="KernelBugException">The mmap lock is not held.</exception>
    public Vma? FindVma(ulong address)
    {
        AssertMmapLocked();
        return _vmas.Find(address);
    }

    /// <summary>
    /// The page-table entry for <paramref name="address"/> as it is now (for tests, diagnostics and drivers'
    /// assertions). Lock-free; the entry may change as soon as it is returned.
    /// </summary>
    /// <param name="address">Any user address.</param>
    /// <returns>The entry, or none.</returns>
    public Pte ReadPte(ulong address)
    {
        PteTable? table = address < TaskSize ? _pageTable.Find(address) : null;
        return table is null ? default : table.Read(PageTable.PteIndex(address));
    }

    /// <summary>Installs the notifier chain once; returns the one installed.</summary>
    internal IMmNotifierChain GetOrSetNotifiers(IMmNotifierChain chain) =>
        Interlocked.CompareExchange(ref _notifiers, chain, null) ?? chain;

    internal void AssertMmapLocked()
    {
        if (!IsMmapLockHeld)
        {
            ThrowHelper.ThrowBug($"The mmap lock of '{Name}' must be held by the caller.");
        }
    }

    internal void AssertMmapWriteLocked()
    {
        if (!_mmapLock.IsWriteLockHeld)
        {
            ThrowHelper.ThrowBug($"The mmap lock of '{Name}' must be held for writing by the caller.");
        }
    }

    internal void ThrowExited() => ThrowHelper.ThrowHmm(Errno.ESRCH, $"Address space '{Name}' has exited.");

    /// <summary>Starts an invalidation; false only for a non-blockable range a subscriber refused.</summary>
    internal bool InvalidateRangeStart(in MmuNotifierRange range) => Notifiers?.InvalidateRangeStart(range) ?? true;

    internal void InvalidateRangeEnd(in MmuNotifierRange range) => Notifiers?.InvalidateRangeEnd(range);

    // exit_mmap: release the notifiers, then unmap every area inside one UNMAP invalidation over the whole space
    // (the kernel's unmap_vmas over [0, ULONG_MAX)), then detach the areas and free the tables. Interval
    // subscriptions that the driver has not removed yet see the release and then the unmap, so a driver that
    // drops device mappings only on UNMAP still drops every mapping of a page freed here; classic notifiers
    // were dropped from the list by the release and get no callback after it, as in the kernel.
    private void ExitMmap()
    {
        // As in the kernel, subscribers are released before the mmap lock is taken, so a release callback may
        // itself wait for work that needs the lock; every entry point already fails with ESRCH.
        Notifiers?.Release();
        _mmapLock.EnterWriteLock();
        try
        {
            Vma[] areas = _vmas.Snapshot();
            if (areas.Length != 0)
            {
                var range = new MmuNotifierRange(0, ulong.MaxValue, MmuNotifierEvent.Unmap);
                InvalidateRangeStart(range);
                foreach (Vma vma in areas)
                {
                    ZapRangeUnsynchronized(vma, vma.Start, vma.End);
                }

                InvalidateRangeEnd(range);
                foreach (Vma vma in areas)
                {
                    DetachUnsynchronized(vma);
                }
            }

            _pageTable.FreeEmptyTables(0, TaskSize);
        }
        finally
        {
            _mmapLock.ExitWriteLock();
        }

        Log.AddressSpaceExited(Logger, Name);
    }
}
