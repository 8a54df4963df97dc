using System.Buffers;

namespace Hmm;

// Setup's two halves: collect (migrate_vma_collect_*) walks the range under one MIGRATE invalidation and turns each
// collectable mapping into a migration entry; unmap (migrate_device_unmap) reaches the page's other mappings through
// the reverse map, then keeps only pages nobody else holds, restoring the others at once.
public static partial class Migrate
{
    /// <summary>The page flags a migrated page carries over to its destination (<c>folio_migrate_flags</c>).</summary>
    private const PageFlags MigratedFlags = PageFlags.Anon | PageFlags.AnonExclusive | PageFlags.SwapBacked | PageFlags.Uptodate | PageFlags.Dirty;

    /// <summary>The virtual span of one PTE table: collect takes each table's lock once for all of its entries.</summary>
    private const ulong PteTableSpan = (ulong)PageTable.EntriesPerTable << PageSize.Shift;

    /// <summary>
    /// Walks the range, filling <paramref name="src"/>; returns how many entries were marked migrating. As the kernel's
    /// <c>migrate_vma_collect_pmd</c>, each PTE table is found once and its lock held across its entries of the range.
    /// </summary>
    private static ulong Collect(Vma vma, ulong start, ulong end, Span<ulong> src, MigrateVmaSelect select, object? owner, Pfn? faultPage)
    {
        Mm mm = vma.Mm;
        var range = new MmuNotifierRange(start, end, MmuNotifierEvent.Migrate, Owner: owner);
        mm.InvalidateRangeStart(range);
        ulong collected = 0;
        ulong hole = vma.IsAnonymous ? MigratePfn.Migrate : 0;
        try
        {
            int i = 0;
            ulong address = start;
            while (address < end)
            {
                ulong tableEnd = Math.Min(end, (address | (PteTableSpan - 1)) + 1);
                int count = (int)((tableEnd - address) >> PageSize.Shift);
                Span<ulong> entries = src.Slice(i, count);
                PteTable? table = mm.PageTable.Find(address);
                if (table is null)
                {
                    entries.Fill(hole);
                    collected += hole == 0 ? 0 : (ulong)count;
                }
                else
                {
                    collected += CollectTable(vma, table, PageTable.PteIndex(address), entries, hole, select, owner, faultPage);
                }

                i += count;
                address = tableEnd;
            }
        }
        finally
        {
            mm.InvalidateRangeEnd(range);
        }

        return collected;
    }

    /// <summary>Collects <paramref name="entries"/>.Length consecutive entries of one PTE table from <paramref name="first"/>, under its lock.</summary>
    private static ulong CollectTable(Vma vma, PteTable table, int first, Span<ulong> entries, ulong hole, MigrateVmaSelect select, object? owner, Pfn? faultPage)
    {
        PhysicalMemory memory = vma.Mm.Memory;
        ulong collected = 0;
        lock (table.Lock)
        {
            for (int i = 0; i < entries.Length; i++)
            {
                ulong entry = CollectLocked(memory, table, first + i, hole, select, owner, faultPage);
                entries[i] = entry;
                collected += MigratePfn.IsMigrating(entry) ? 1UL : 0;
            }
        }

        return collected;
    }

    /// <summary>Collects one entry of <paramref name="table"/>, whose lock the caller holds.</summary>
    private static ulong CollectLocked(PhysicalMemory memory, PteTable table, int index, ulong hole, MigrateVmaSelect select, object? owner, Pfn? faultPage)
    {
        Pte pte = table.Read(index);
        ulong entry;
        switch (pte.Kind)
        {
            case PteKind.None:
                return hole;
            case PteKind.DevicePrivate:
                if ((select & MigrateVmaSelect.DevicePrivate) == 0 || !OwnedBy(memory, pte.Pfn, owner))
                {
                    return 0;
                }

                entry = MigratePfn.FromPfn(pte.Pfn) | MigratePfn.Migrate | (pte.IsWritable ? MigratePfn.Write : 0);
                break;
            case PteKind.Present:
                if (pte.Pfn == PhysicalMemory.ZeroPage)
                {
                    // The zero page stays mapped: it is "no page yet", replaced only if the driver supplies one.
                    return (select & MigrateVmaSelect.System) != 0 ? MigratePfn.Migrate : 0;
                }

                if (!IsSelectedPresentPage(memory, pte.Pfn, select, owner))
                {
                    return 0;
                }

                entry = MigratePfn.FromPfn(pte.Pfn) | MigratePfn.Migrate | (pte.IsWritable ? MigratePfn.Write : 0);
                break;
            default:
                // Migration entries belong to another migration; device-exclusive entries are not migratable.
                return 0;
        }

        Pfn page = pte.Pfn;
        ref PageFrame frame = ref memory.Frame(page);
        if (frame.Mapping == 0)
        {
            return 0;
        }

        // The kernel takes a reference here and drops the entry's once the entry is gone; under the PTE lock the
        // entry's reference cannot go meanwhile, so the migration simply inherits it: the count is the same at every
        // point another thread can look at it, and no pair of atomics is paid per page.
        bool isFaultPage = faultPage == page;
        if (!isFaultPage && !PhysicalMemory.TryLockFrame(ref frame))
        {
            // Migration is best effort: waiting here could deadlock two migrations on each other's pages.
            return 0;
        }

        const PageFlags exclusiveAnon = PageFlags.Anon | PageFlags.AnonExclusive;
        if ((frame.Flags & exclusiveAnon) == exclusiveAnon && frame.RefCount >= Mm.PinCountingBias)
        {
            // A possibly pinned exclusive page (folio_maybe_dma_pinned: at least the pin bias of references) cannot be
            // shared with a migration entry (folio_try_share_anon_rmap_pte).
            if (!isFaultPage)
            {
                memory.UnlockPage(page);
            }

            return 0;
        }

        if (pte.IsDirty)
        {
            Interlocked.Or(ref frame._flags, (ulong)PageFlags.Dirty);
        }

        table.SetUnsynchronized(index, Pte.Software(PteKind.Migration, page, pte.IsWritable));
        Interlocked.Decrement(ref frame._mapCount);
        return entry;
    }

    /// <summary>A present page's eligibility: RAM with SYSTEM, coherent device memory with DEVICE_COHERENT and the right owner.</summary>
    private static bool IsSelectedPresentPage(PhysicalMemory memory, Pfn page, MigrateVmaSelect select, object? owner)
    {
        if (!memory.Page(page).IsZoneDevice)
        {
            return (select & MigrateVmaSelect.System) != 0;
        }

        return DevPagemap.OfPage(memory, page) is { Type: MemoryType.DeviceCoherent } pagemap
            && (select & MigrateVmaSelect.DeviceCoherent) != 0
            && ReferenceEquals(pagemap.Owner, owner);
    }

    private static bool OwnedBy(PhysicalMemory memory, Pfn page, object? owner) =>
        DevPagemap.OfPage(memory, page) is { } pagemap && ReferenceEquals(pagemap.Owner, owner);

    private static bool IsDevicePrivate(PhysicalMemory memory, Pfn page) =>
        memory.Page(page).IsZoneDevice && DevPagemap.OfPage(memory, page) is { Type: MemoryType.DevicePrivate };

    /// <summary>
    /// Unmaps every collected page from its other mappings and keeps only those nobody else holds; the rest get their
    /// entries back, are unlocked and put, and become 0. Returns how many entries still migrate, holes included.
    /// </summary>
    private static ulong Unmap(PhysicalMemory memory, Span<ulong> src, Pfn? faultPage)
    {
        ulong unmapped = 0;
        int restore = 0;
        var migrator = new Migrator(memory);
        try
        {
            for (int i = 0; i < src.Length; i++)
            {
                if (!MigratePfn.TryGetPage(src[i], out Pfn page))
                {
                    if (MigratePfn.IsMigrating(src[i]))
                    {
                        unmapped++;
                    }

                    continue;
                }

                if (memory.Page(page).MapCount > 0)
                {
                    migrator.TryToMigrate(page);
                }

                if (memory.Page(page).MapCount > 0 || !HasOnlyExpectedReferences(memory, page, faultPage))
                {
                    src[i] &= ~MigratePfn.Migrate;
                    restore++;
                    continue;
                }

                unmapped++;
            }
        }
        finally
        {
            migrator.Dispose();
        }

        for (int i = 0; i < src.Length && restore > 0; i++)
        {
            if (!MigratePfn.TryGetPage(src[i], out Pfn page) || MigratePfn.IsMigrating(src[i]))
            {
                continue;
            }

            RemoveMigrationEntries(memory, page, page);
            src[i] = 0;
            if (faultPage != page)
            {
                UnlockAndPut(memory, page);
            }
            else
            {
                memory.PutPage(page);
            }

            restore--;
        }

        return unmapped;
    }

    /// <summary>
    /// Whether the unmapped page holds only the references a migration expects (<c>migrate_vma_check_page</c>): the
    /// collector's, the faulting path's for the fault page, the page cache's for a file page. Anything more is a pin,
    /// a GUP reference or a DMA in flight, and the page must stay where it is.
    /// </summary>
    private static bool HasOnlyExpectedReferences(PhysicalMemory memory, Pfn page, Pfn? faultPage)
    {
        ref readonly PageFrame frame = ref memory.Page(page);
        int expected = 1 + (faultPage == page ? 1 : 0) + (IsFilePage(frame) ? 1 : 0);
        return frame.RefCount - expected <= frame.MapCount;
    }

    private static bool IsFilePage(in PageFrame frame) => frame.Mapping != 0 && (frame.Flags & PageFlags.Anon) == 0;

    /// <summary>
    /// Replaces the remaining mappings of a run of pages, found through the reverse map in every address space, with
    /// migration entries (<c>try_to_migrate</c>); each address space's notifiers hear a <see cref="MmuNotifierEvent.Clear"/>
    /// of the page first. The caller holds each page's lock and a reference. Across consecutive pages of one anon_vma the
    /// rmap lock stays held shared and one copy of its area list serves them all: an area linked meanwhile (a fork, a
    /// split) is missed, which leaves its page mapped, so the caller's mapcount check keeps that page where it is, as for
    /// any mapping this walk did not reach. Dispose releases the lock.
    /// </summary>
    private struct Migrator(PhysicalMemory memory) : IDisposable
    {
        private AnonVma? _held;
        private Vma[]? _areas;
        private int _count;

        public void TryToMigrate(Pfn page)
        {
            ref readonly PageFrame frame = ref memory.Page(page);
            AnonVma? anonVma = (frame.Flags & PageFlags.Anon) != 0 ? memory.Mappings.Find(frame.Mapping) as AnonVma : null;
            if (anonVma is null)
            {
                Release();
                foreach ((Vma vma, ulong address) in Rmap.Candidates(memory, page))
                {
                    MigrateOneMapping(memory, vma.Mm, address, page);
                }

                return;
            }

            if (!ReferenceEquals(anonVma, _held))
            {
                Release();
                anonVma.EnterRmapRead();
                _held = anonVma;

                // The areas are copied to a pooled array under the list lock, and the notifiers called outside it:
                // eviction stays allocation-free without running callbacks under a lock that munmap needs.
                lock (anonVma.ListLock)
                {
                    List<Vma> vmas = anonVma.VmasUnsynchronized;
                    _areas = ArrayPool<Vma>.Shared.Rent(Math.Max(1, vmas.Count));
                    _count = vmas.Count;
                    vmas.CopyTo(_areas);
                }
            }

            ulong pageIndex = frame.Index;
            for (int i = 0; i < _count; i++)
            {
                Vma vma = _areas![i];
                if (pageIndex >= vma.PgOff && pageIndex - vma.PgOff < (vma.End - vma.Start) >> PageSize.Shift)
                {
                    MigrateOneMapping(memory, vma.Mm, vma.Start + ((pageIndex - vma.PgOff) << PageSize.Shift), page);
                }
            }
        }

        public void Dispose() => Release();

        private void Release()
        {
            if (_areas is { } areas)
            {
                _areas = null;
                _count = 0;
                ArrayPool<Vma>.Shared.Return(areas, clearArray: true);
            }

            if (_held is { } held)
            {
                _held = null;
                held.ExitRmapRead();
            }
        }
    }

    private static void MigrateOneMapping(PhysicalMemory memory, Mm mm, ulong address, Pfn page)
    {
        PteTable? table = mm.PageTable.Find(address);
        if (table is null)
        {
            return;
        }

        var range = new MmuNotifierRange(address, address + PageSize.Bytes, MmuNotifierEvent.Clear);
        mm.InvalidateRangeStart(range);
        bool replaced = false;
        lock (table.Lock)
        {
            int index = PageTable.PteIndex(address);
            Pte pte = table.Read(index);
            if (Mm.HoldsPage(pte) && pte.Pfn == page)
            {
                ref PageFrame frame = ref memory.Frame(page);
                if (pte.IsDirty)
                {
                    Interlocked.Or(ref frame._flags, (ulong)PageFlags.Dirty);
                }

                table.SetUnsynchronized(index, Pte.Software(PteKind.Migration, page, pte.IsWritable));
                Interlocked.Decrement(ref frame._mapCount);
                replaced = true;
            }
        }

        mm.InvalidateRangeEnd(range);
        if (replaced)
        {
            memory.PutPage(page);
        }
    }

    /// <summary>
    /// Points every migration entry naming <paramref name="source"/> at <paramref name="target"/> (the source itself to
    /// restore it), found through the source's reverse map (<c>remove_migration_ptes</c>). Each new entry takes a
    /// mapcount and a reference on the target; a device-private target gets a device-private entry. No invalidation is
    /// needed: a migration entry maps nothing.
    /// </summary>
    private static void RemoveMigrationEntries(PhysicalMemory memory, Pfn source, Pfn target)
    {
        AnonVma? locked = Rmap.LockAnonVmaRead(memory, source);
        try
        {
            RemoveMigrationEntriesLocked(memory, source, target);
        }
        finally
        {
            locked?.ExitRmapRead();
        }
    }

    private static void RemoveMigrationEntriesLocked(PhysicalMemory memory, Pfn source, Pfn target)
    {
        var pte = default(HeldPteLock);
        try
        {
            ref readonly PageFrame frame = ref memory.Page(source);
            if ((frame.Flags & PageFlags.Anon) != 0 && memory.Mappings.Find(frame.Mapping) is AnonVma anonVma)
            {
                lock (anonVma.ListLock)
                {
                    RemoveAnonMigrationEntries(memory, anonVma, source, target, ref pte);
                    pte.Release();
                }

                return;
            }

            bool devicePrivate = IsDevicePrivate(memory, target);
            foreach ((Vma vma, ulong address) in Rmap.Candidates(memory, source))
            {
                RemoveMigrationEntry(memory, vma.Mm, address, source, target, devicePrivate, ref pte);
            }
        }
        finally
        {
            pte.Release();
        }
    }

    /// <summary>
    /// The common case: walks the anon_vma's area list in place, so finalize stays allocation-free. The caller holds
    /// the anon_vma's rmap lock shared and its list lock; the PTE lock of the last entry restored stays in
    /// <paramref name="pte"/>, for the next page's entry, which is usually in the same table.
    /// </summary>
    private static void RemoveAnonMigrationEntries(PhysicalMemory memory, AnonVma anonVma, Pfn source, Pfn target, ref HeldPteLock pte)
    {
        bool devicePrivate = IsDevicePrivate(memory, target);
        ulong pageIndex = memory.Page(source).Index;
        List<Vma> vmas = anonVma.VmasUnsynchronized;
        for (int i = 0; i < vmas.Count; i++)
        {
            Vma vma = vmas[i];
            if (pageIndex >= vma.PgOff && pageIndex - vma.PgOff < (vma.End - vma.Start) >> PageSize.Shift)
            {
                RemoveMigrationEntry(memory, vma.Mm, vma.Start + ((pageIndex - vma.PgOff) << PageSize.Shift), source, target, devicePrivate, ref pte);
            }
        }
    }

    /// <summary>
    /// Restores the migration entries of many pages in a row (finalize), keeping the rmap and list locks of one
    /// anon_vma across consecutive pages of that anon_vma, and the PTE lock of one table across consecutive entries
    /// in it, instead of taking them per page. Dispose releases them, the PTE lock first.
    /// </summary>
    private struct EntryRestorer(PhysicalMemory memory) : IDisposable
    {
        private AnonVma? _held;
        private HeldPteLock _pte;

        public void Restore(Pfn source, Pfn target)
        {
            ref readonly PageFrame frame = ref memory.Page(source);
            AnonVma? anonVma = (frame.Flags & PageFlags.Anon) != 0 ? memory.Mappings.Find(frame.Mapping) as AnonVma : null;
            if (anonVma is null)
            {
                Release();
                RemoveMigrationEntries(memory, source, target);
                return;
            }

            if (!ReferenceEquals(anonVma, _held))
            {
                Release();
                anonVma.EnterRmapRead();
                anonVma.ListLock.Enter();
                _held = anonVma;
            }

            RemoveAnonMigrationEntries(memory, anonVma, source, target, ref _pte);
        }

        public void Dispose() => Release();

        private void Release()
        {
            _pte.Release();
            if (_held is { } held)
            {
                _held = null;
                held.ListLock.Exit();
                held.ExitRmapRead();
            }
        }
    }

    /// <summary>
    /// The PTE lock of one table, held across consecutive entries of a batch. A table found by an rmap walk can be
    /// unlinked meanwhile only once it is empty (<see cref="PageTable.FreeEmptyTables"/>), and then it holds none of the
    /// batch's migration entries; while its lock is held, no entry in it changes. Taken innermost, like every PTE lock:
    /// released before any other lock is taken or released.
    /// </summary>
    private struct HeldPteLock
    {
        private PteTable? _table;
        private PageTable? _owner;

        /// <summary>The table covering <paramref name="address"/> in <paramref name="mm"/>, its lock held; null when there is none.</summary>
        public PteTable? Acquire(Mm mm, ulong address) => Acquire(mm, address, allocate: false);

        /// <summary>As <see cref="Acquire(Mm, ulong)"/>, allocating the table when there is none (<c>pte_alloc</c>, after releasing any held PTE lock).</summary>
        public PteTable AcquireOrAllocate(Mm mm, ulong address) => Acquire(mm, address, allocate: true)!;

        public void Release()
        {
            if (_table is { } held)
            {
                _table = null;
                _owner = null;
                held.Lock.Exit();
            }
        }

        private PteTable? Acquire(Mm mm, ulong address, bool allocate)
        {
            if (_table is { } held)
            {
                if (ReferenceEquals(_owner, mm.PageTable) && held.BaseAddress == (address & ~(PteTableSpan - 1)))
                {
                    return held;
                }

                Release();
            }

            PteTable? table = allocate ? mm.PageTable.FindOrAllocate(address) : mm.PageTable.Find(address);
            if (table is not null)
            {
                table.Lock.Enter();
                _table = table;
                _owner = mm.PageTable;
            }

            return table;
        }
    }

    /// <summary>Restores one migration entry; the PTE lock it takes stays held in <paramref name="held"/>.</summary>
    private static void RemoveMigrationEntry(PhysicalMemory memory, Mm mm, ulong address, Pfn source, Pfn target, bool devicePrivate, ref HeldPteLock held)
    {
        PteTable? table = held.Acquire(mm, address);
        if (table is null)
        {
            return;
        }

        int index = PageTable.PteIndex(address);
        Pte pte = table.Read(index);
        if (pte.Kind != PteKind.Migration || pte.Pfn != source)
        {
            return;
        }

        ref PageFrame frame = ref memory.Frame(target);
        if (target != source && (memory.Page(source).Flags & PageFlags.AnonExclusive) == 0)
        {
            // A fork copied a migration entry of the source meanwhile and cleared its flag: the new page is
            // shared, so a write fault must copy it, not reuse it in place (the kernel's readable, non-exclusive entry).
            Interlocked.And(ref frame._flags, ~(ulong)PageFlags.AnonExclusive);
        }

        bool dirty = pte.IsWritable && (frame.Flags & PageFlags.Dirty) != 0;
        Interlocked.Increment(ref frame._mapCount);
        memory.GetPage(target);
        table.SetUnsynchronized(index, devicePrivate
            ? Pte.Software(PteKind.DevicePrivate, target, pte.IsWritable)
            : Pte.Present(target, pte.IsWritable, dirty));
    }

    /// <summary>References and trylocks one device PFN for eviction (<c>migrate_device_pfn_lock</c>); 0 for a free or contended page.</summary>
    private static ulong LockDevicePfn(PhysicalMemory memory, Pfn pfn)
    {
        if (!memory.TryGetPage(pfn))
        {
            return 0;
        }

        if (!memory.TryLockPage(pfn))
        {
            memory.PutPage(pfn);
            return 0;
        }

        return MigratePfn.FromPfn(pfn) | MigratePfn.Migrate;
    }
}
