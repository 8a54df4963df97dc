
namespace Hmm;

// The fault handler (handle_mm_fault): makes one page accessible for a read or a write, whatever its entry
// holds. Rules: the caller holds the mmap lock and has checked the area's permissions; every entry change is a
// read-check-change under the PTE lock, and a change that replaces a mapped page (COW break, exclusive restore)
// is bracketed by a notifier invalidation taken *outside* the PTE lock; when the entry changed meanwhile, the
// fault simply runs again. Callbacks (migrate_to_ram) run with the page locked and referenced, no PTE lock held.
public sealed partial class Mm
{
    private const int MaxFaultRetries = 10_000;

    /// <summary>
    /// Handles a fault at <paramref name="address"/> in <paramref name="vma"/> (<c>handle_mm_fault</c>), after the
    /// checks the architecture's fault handler makes first (<c>access_error</c>). The caller holds the mmap lock.
    /// </summary>
    /// <param name="vma">The area containing the address: one of this address space's current areas (<see cref="FindVma"/>).</param>
    /// <param name="address">The faulting address, inside <paramref name="vma"/>.</param>
    /// <param name="flags">Read or write, local or remote; <see cref="FaultFlags.Unshare"/> to make a shared page exclusive without write access.</param>
    /// <returns>
    /// Error model: the kernel's <c>vm_fault_t</c> is returned. <see cref="VmFaultResult.None"/> when the page is now
    /// accessible as asked; <see cref="VmFaultResult.Sigsegv"/> when the area does not permit the access (a write to an
    /// area without <see cref="VmFlags.Write"/>, any fault in an area without access), with nothing installed;
    /// <see cref="VmFaultResult.Oom"/> or <see cref="VmFaultResult.Sigbus"/> otherwise (also for a hole in a special area).
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="vma"/> is null.</exception>
    /// <exception cref="HmmException">
    /// Error model: invalid arguments, nothing changes. <see cref="Errno.EINVAL"/>: <paramref name="vma"/> belongs to
    /// another address space; <see cref="Errno.EFAULT"/>: <paramref name="address"/> is outside <paramref name="vma"/>, or
    /// <paramref name="vma"/> is stale (unmapped, or no longer the area at that address after a split or a move).
    /// </exception>
    /// <exception cref="KernelBugException">The mmap lock is not held, a driver's <c>migrate_to_ram</c> keeps returning success without moving the page, or a device-private entry names a page of no device-private pagemap.</exception>
    public VmFaultResult HandleMmFault(Vma vma, ulong address, FaultFlags flags)
    {
        ArgumentNullException.ThrowIfNull(vma);
        AssertMmapLocked();
        ThrowIfNotCurrentArea(vma, address);
        bool write = (flags & FaultFlags.Write) != 0;
        VmFlags needed = write ? VmFlags.Write : VmFlags.Read | VmFlags.Write | VmFlags.Exec;
        if ((vma.Flags & needed) == 0)
        {
            TraceEmitter trace = Memory.Trace;
            if (trace.IsEnabled)
            {
                trace.Emit(TraceEvent.CpuFault(address, flags, VmFaultResult.Sigsegv, trace.VirtualNow));
            }

            return VmFaultResult.Sigsegv;
        }

        return HandleMmFaultUnchecked(vma, address, flags);
    }

    /// <summary>Throws unless <paramref name="vma"/> is this address space's current area at <paramref name="address"/>. Caller holds the mmap lock.</summary>
    internal void ThrowIfNotCurrentArea(Vma vma, ulong address)
    {
        if (vma.Mm != this)
        {
            ThrowForeignArea(vma);
        }

        if (!vma.Contains(address) || _vmas.Find(address) != vma)
        {
            ThrowStaleArea(vma, address);
        }
    }

    /// <summary><see cref="HandleMmFault"/> for callers that found the area themselves and checked the access.</summary>
    private VmFaultResult HandleMmFaultUnchecked(Vma vma, ulong address, FaultFlags flags)
    {
        VmFaultResult result = HandleMmFaultLoop(vma, address, flags, out PteKind entry);
        HmmMetrics.RecordFault(flags, entry, result);
        TraceEmitter trace = Memory.Trace;
        if (trace.IsEnabled)
        {
            trace.Emit(TraceEvent.CpuFault(address, flags, result, trace.VirtualNow));
        }

        return result;
    }

    /// <summary>The fault proper; <paramref name="firstEntry"/> is the kind of entry the first attempt found.</summary>
    private VmFaultResult HandleMmFaultLoop(Vma vma, ulong address, FaultFlags flags, out PteKind firstEntry)
    {
        firstEntry = PteKind.None;
        bool write = (flags & FaultFlags.Write) != 0;
        bool unshare = !write && (flags & FaultFlags.Unshare) != 0;
        address &= PageSize.Mask;
        var backoff = default(SpinWait);
        for (int attempt = 0; attempt < MaxFaultRetries; attempt++)
        {
            if (attempt > 1)
            {
                // The first retry is the usual one (the access after a migrate_to_ram or a migration wait). A later
                // one can be waiting for another thread's next step (a migrator between unlocking a page and
                // putting its reference): spin briefly, then yield and sleep, so that thread gets the core.
                backoff.SpinOnce();
            }

            PteTable table = _pageTable.FindOrAllocate(address);
            int index = PageTable.PteIndex(address);
            Pte pte = table.Read(index);
            if (attempt == 0)
            {
                firstEntry = pte.Kind;
            }

            FaultStep step = pte.Kind switch
            {
                // A special area has no fault handler here: its driver inserted every entry it has.
                PteKind.None when vma.IsSpecial => FaultStep.Fail(VmFaultResult.Sigbus),
                PteKind.None => vma.File is null ? AnonymousFault(vma, table, index, address, write) : FileFault(vma, table, index, address, write),
                PteKind.Present when (write || unshare) && !pte.IsWritable && pte.IsSpecial => SpecialWriteFault(vma, table, index, address, pte, unshare),
                PteKind.Present when (write || unshare) && !pte.IsWritable => WriteProtectFault(vma, table, index, address, pte, unshare),
                PteKind.Present => MarkAccessed(table, index, pte, write),
                PteKind.DevicePrivate => DevicePrivateFault(vma, table, index, address, pte, write),
                PteKind.Migration => WaitForMigration(pte),
                PteKind.DeviceExclusive => RestoreExclusive(table, index, address, pte),
                _ => FaultStep.Fail(VmFaultResult.Sigbus),
            };

            if (step.Done)
            {
                return step.Result;
            }
        }

        ThrowHelper.ThrowBug($"Fault at 0x{address:x} in '{Name}' made no progress after {MaxFaultRetries} attempts (a migrate_to_ram that reports success without migrating?).");
        return VmFaultResult.Sigbus;
    }

    /// <summary>
    /// A write to a read-only special entry (no struct page reference): a shared area just gains write access
    /// (<c>wp_pfn_shared</c>); a private one copies the frame into a new anonymous page when the frame has bytes
    /// behind it, and fails with SIGBUS when it has none (device I/O memory the simulator cannot copy).
    /// </summary>
    private FaultStep SpecialWriteFault(Vma vma, PteTable table, int index, ulong address, Pte pte, bool unshare)
    {
        if (unshare)
        {
            return FaultStep.Success;
        }

        if (vma.IsShared)
        {
            return MakeWritableInPlace(table, index, pte);
        }

        if (!Memory.IsPresent(pte.Pfn))
        {
            return FaultStep.Fail(VmFaultResult.Sigbus);
        }

        if (!TryAllocateAnonPage(vma, address, pte.Pfn, out Pfn copy))
        {
            return FaultStep.Fail(VmFaultResult.Oom);
        }

        // A special entry holds no reference or mapcount on its frame, so nothing of the old page is dropped.
        InstallCopy(table, index, address, pte, Pte.Present(copy, writable: true, dirty: true), oldMapped: default);
        return FaultStep.Retry;
    }

    /// <summary>A write to a read-only entry of a shared mapping: the same page becomes writable in place.</summary>
    private static FaultStep MakeWritableInPlace(PteTable table, int index, Pte pte)
    {
        lock (table.Lock)
        {
            if (table.Read(index) == pte)
            {
                table.SetUnsynchronized(index, new Pte(pte.Raw | Pte.WriteBit | Pte.DirtyBit));
            }
        }

        return FaultStep.Retry;
    }

    /// <summary>
    /// Replaces the entry the fault saw with <paramref name="replacement"/> (a private copy) under a Clear invalidation,
    /// dropping the mapcount of <paramref name="oldMapped"/> when it is a counted page; when the entry changed meanwhile
    /// the copy is discarded and false is returned.
    /// </summary>
    private bool InstallCopy(PteTable table, int index, ulong address, Pte seen, Pte replacement, Pfn oldMapped)
    {
        var range = new MmuNotifierRange(address, address + PageSize.Bytes, MmuNotifierEvent.Clear);
        InvalidateRangeStart(range);
        bool replaced = false;
        lock (table.Lock)
        {
            if (table.Read(index) == seen)
            {
                table.SetUnsynchronized(index, replacement);
                replaced = true;
                if (oldMapped != default)
                {
                    Interlocked.Decrement(ref Memory.Frame(oldMapped)._mapCount);
                }
            }
        }

        InvalidateRangeEnd(range);
        if (!replaced)
        {
            DiscardAnonPage(replacement.Pfn);
        }

        return replaced;
    }

    private FaultStep AnonymousFault(Vma vma, PteTable table, int index, ulong address, bool write)
    {
        if (!write)
        {
            lock (table.Lock)
            {
                if (table.Read(index).IsNone)
                {
                    table.SetUnsynchronized(index, Pte.Present(PhysicalMemory.ZeroPage, writable: false));
                }
            }

            return FaultStep.Retry;
        }

        if (!TryAllocateAnonPage(vma, address, source: null, out Pfn page))
        {
            return FaultStep.Fail(VmFaultResult.Oom);
        }

        if (!InstallIfNone(table, index, Pte.Present(page, writable: true, dirty: true)))
        {
            DiscardAnonPage(page);
            return FaultStep.Retry;
        }

        // The entry just installed is present, writable and dirty: looking again would only find it so (as the
        // kernel's do_anonymous_page, the fault ends here; a later change by another thread is a new fault's business).
        return FaultStep.Success;
    }

    private FaultStep FileFault(Vma vma, PteTable table, int index, ulong address, bool write)
    {
        SimFile file = vma.File!;
        ulong pageIndex = vma.PageIndex(address);
        if (pageIndex >= file.PageCount)
        {
            return FaultStep.Fail(VmFaultResult.Sigbus);
        }

        Pfn cached;
        try
        {
            cached = file.GetPage(pageIndex);
        }
        catch (HmmException error) when (error.Error == Errno.ENOMEM)
        {
            return FaultStep.Fail(VmFaultResult.Oom);
        }

        if (vma.IsShared || !write)
        {
            // A read fault maps the page writable at once in a shared writable area that does not want write-notify
            // (vma_wants_writenotify: shmem, and simulated files by default); otherwise the first write faults again.
            bool writable = vma.IsShared && (write || ((vma.Flags & VmFlags.Write) != 0 && !file.WantsWriteNotify));
            Interlocked.Increment(ref Memory.Frame(cached)._mapCount);
            if (!InstallIfNone(table, index, Pte.Present(cached, writable, dirty: write)))
            {
                Interlocked.Decrement(ref Memory.Frame(cached)._mapCount);
                Memory.PutPage(cached);
            }

            return FaultStep.Retry;
        }

        // A write to a private file mapping: copy the file page into a new anonymous page.
        try
        {
            if (!TryAllocateAnonPage(vma, address, cached, out Pfn copy))
            {
                return FaultStep.Fail(VmFaultResult.Oom);
            }

            if (!InstallIfNone(table, index, Pte.Present(copy, writable: true, dirty: true)))
            {
                DiscardAnonPage(copy);
            }
        }
        finally
        {
            Memory.PutPage(cached);
        }

        return FaultStep.Retry;
    }

    /// <summary>
    /// A write to a present read-only entry: reuse the page if this mapping owns it alone, else copy (COW break).
    /// An anonymous page marked exclusive is reused whatever its refcount, as the kernel does: extra references
    /// are pins or GUP references taken while it was exclusive, and copying would leave them on a stale page.
    /// With <paramref name="unshare"/> the page only becomes exclusive: the entry stays read-only (<c>FAULT_FLAG_UNSHARE</c>).
    /// </summary>
    private FaultStep WriteProtectFault(Vma vma, PteTable table, int index, ulong address, Pte pte, bool unshare)
    {
        if (vma.IsShared)
        {
            return unshare ? FaultStep.Success : MakeWritableInPlace(table, index, pte);
        }

        Pfn old = pte.Pfn;
        if (old != PhysicalMemory.ZeroPage)
        {
            lock (table.Lock)
            {
                ref PageFrame frame = ref Memory.Frame(old);
                PageFlags pageFlags = frame.Flags;
                if (table.Read(index) == pte && (pageFlags & PageFlags.Anon) != 0
                    && ((pageFlags & PageFlags.AnonExclusive) != 0 || (frame.MapCount == 1 && frame.RefCount == 1)))
                {
                    Interlocked.Or(ref frame._flags, (ulong)PageFlags.AnonExclusive);
                    if (unshare)
                    {
                        return FaultStep.Success;
                    }

                    table.SetUnsynchronized(index, new Pte(pte.Raw | Pte.WriteBit | Pte.DirtyBit));
                    return FaultStep.Retry;
                }
            }

            if (!Memory.TryGetPage(old))
            {
                return FaultStep.Retry;
            }
        }

        try
        {
            if (!TryAllocateAnonPage(vma, address, old, out Pfn copy))
            {
                return FaultStep.Fail(VmFaultResult.Oom);
            }

            Pte replacement = unshare ? Pte.Present(copy, writable: false) : Pte.Present(copy, writable: true, dirty: true);
            bool replaced = InstallCopy(table, index, address, pte, replacement, oldMapped: old == PhysicalMemory.ZeroPage ? default : old);
            if (replaced && old != PhysicalMemory.ZeroPage)
            {
                Memory.PutPage(old);
            }

            // An unshared entry stays read-only, so looking again would unshare again: it is done once installed.
            return replaced && unshare ? FaultStep.Success : FaultStep.Retry;
        }
        finally
        {
            if (old != PhysicalMemory.ZeroPage)
            {
                Memory.PutPage(old);
            }
        }
    }

    private static FaultStep MarkAccessed(PteTable table, int index, Pte pte, bool write)
    {
        if (write && !pte.IsDirty)
        {
            lock (table.Lock)
            {
                if (table.Read(index) == pte)
                {
                    table.SetUnsynchronized(index, new Pte(pte.Raw | Pte.DirtyBit));
                }
            }
        }

        return FaultStep.Success;
    }

    /// <summary>
    /// A CPU access to a device-private page: the owning pagemap's <c>migrate_to_ram</c> brings it back. As in
    /// <c>do_swap_page</c>, the page lock is only tried, under the PTE lock that keeps the page alive, and the reference
    /// is taken once it is held: a thread that finds the lock taken waits without a reference and faults again, so the
    /// holder's migration never sees the waiters as pins.
    /// </summary>
    private FaultStep DevicePrivateFault(Vma vma, PteTable table, int index, ulong address, Pte pte, bool write)
    {
        Pfn page = pte.Pfn;
        bool locked;
        lock (table.Lock)
        {
            if (table.Read(index) != pte)
            {
                return FaultStep.Retry;
            }

            ref PageFrame frame = ref Memory.Frame(page);
            locked = PhysicalMemory.TryLockFrame(ref frame);
            if (locked)
            {
                PhysicalMemory.GetFrame(ref frame, page);
            }
        }

        if (!locked)
        {
            Memory.WaitOnPageUnlocked(page);
            return FaultStep.Retry;
        }

        try
        {
            // The page's reference keeps its pagemap alive, also once teardown has begun, when a lookup
            // (get_dev_pagemap) would fail: the page must still come back then, so the owner is read from the page.
            if (DevPagemap.OfPage(Memory, page) is not { Ops: { } ops } pagemap)
            {
                ThrowHelper.ThrowBug($"Device-private entry at 0x{address:x} in '{Name}' names {page}, which belongs to no device-private pagemap.");
                return FaultStep.Fail(VmFaultResult.Sigbus);
            }

            VmFaultResult result = ops.MigrateToRam(new DevicePrivateFault(pagemap, page, address, write, vma));
            return result == VmFaultResult.None || (result & VmFaultResult.Retry) != 0 ? FaultStep.Retry : FaultStep.Fail(result);
        }
        finally
        {
            Memory.UnlockPage(page);
            Memory.PutPage(page);
        }
    }

    /// <summary>A page under migration: wait until the migrator unlocks it, then look again (<c>migration_entry_wait</c>).</summary>
    private FaultStep WaitForMigration(Pte pte)
    {
        MigrationEntryWait(pte);
        return FaultStep.Retry;
    }

    /// <summary>
    /// Waits until the page a migration entry names is unlocked by its migrator (<c>migration_entry_wait</c>), without
    /// holding a reference: the migrator counts references to decide whether the page is pinned.
    /// </summary>
    internal void MigrationEntryWait(Pte pte) => Memory.WaitOnPageUnlocked(pte.Pfn);

    /// <summary>A CPU access revokes a device's exclusive access: the original entry comes back after the notifiers ran.</summary>
    private FaultStep RestoreExclusive(PteTable table, int index, ulong address, Pte pte)
    {
        Pfn page = pte.Pfn;
        if (!Memory.TryGetPage(page))
        {
            return FaultStep.Retry;
        }

        Memory.LockPage(page);
        try
        {
            var range = new MmuNotifierRange(address, address + PageSize.Bytes, MmuNotifierEvent.Clear);
            InvalidateRangeStart(range);
            lock (table.Lock)
            {
                if (table.Read(index) == pte)
                {
                    table.SetUnsynchronized(index, Pte.Present(page, pte.IsWritable));
                }
            }

            InvalidateRangeEnd(range);
        }
        finally
        {
            Memory.UnlockPage(page);
            Memory.PutPage(page);
        }

        return FaultStep.Retry;
    }

    private static bool InstallIfNone(PteTable table, int index, Pte pte)
    {
        lock (table.Lock)
        {
            if (!table.Read(index).IsNone)
            {
                return false;
            }

            table.SetUnsynchronized(index, pte);
            return true;
        }
    }

    /// <summary>
    /// Allocates a page for <paramref name="vma"/> at <paramref name="address"/>, zeroed or holding a copy of
    /// <paramref name="source"/>, and makes it anonymous there: mapping, index, mapcount 1
    /// (<c>folio_add_new_anon_rmap</c>). The caller installs it or gives it back with <see cref="DiscardAnonPage"/>.
    /// </summary>
    private bool TryAllocateAnonPage(Vma vma, ulong address, Pfn? source, out Pfn page)
    {
        if (!Memory.TryAllocatePage(out page))
        {
            return false;
        }

        if (Memory.StoresPageData)
        {
            if (source is { } from)
            {
                Memory.ReadPageData(from).CopyTo(Memory.PageData(page));
            }
            else
            {
                Memory.PageData(page).Clear();
            }
        }

        ref PageFrame frame = ref Memory.Frame(page);
        frame._mapping = vma.AnonVma!.Handle;
        frame._index = vma.PageIndex(address);
        frame._mapCount = 1;
        Interlocked.Or(ref frame._flags, (ulong)(PageFlags.Anon | PageFlags.AnonExclusive | PageFlags.SwapBacked | PageFlags.Uptodate | PageFlags.Dirty));
        return true;
    }

    /// <summary>Frees a page from <see cref="TryAllocateAnonPage"/> that lost the race to be installed.</summary>
    private void DiscardAnonPage(Pfn page)
    {
        Memory.Frame(page)._mapCount = 0;
        Memory.PutPage(page);
    }

    private readonly record struct FaultStep(bool Done, VmFaultResult Result)
    {
        public static FaultStep Retry => default;

        public static FaultStep Success => new(true, VmFaultResult.None);

        public static FaultStep Fail(VmFaultResult result) => new(true, result);
    }
}
