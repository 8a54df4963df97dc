using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

namespace Hmm;

// The commit half: pages moves page metadata to the destinations (or inserts them where there was no page) and
// narrows src to what truly migrates; finalize rewires the migration entries and releases locks and references.
public static partial class Migrate
{
    /// <summary>Shared by <c>migrate_vma_pages</c> (<paramref name="vma"/> set) and <c>migrate_device_pages</c>.</summary>
    private static void MovePages(PhysicalMemory memory, Span<ulong> src, ReadOnlySpan<ulong> dst, Vma? vma, ulong start, object? owner, Pfn? faultPage)
    {
        bool notified = false;
        MmuNotifierRange range = default;
        var pte = default(HeldPteLock);
        try
        {
            for (int i = 0; i < src.Length; i++)
            {
                if (!MigratePfn.TryGetPage(dst[i], out Pfn newPage))
                {
                    src[i] &= ~MigratePfn.Migrate;
                    continue;
                }

                if (!MigratePfn.TryGetPage(src[i], out Pfn page))
                {
                    if (!MigratePfn.IsMigrating(src[i]))
                    {
                        continue;
                    }

                    if (vma is null)
                    {
                        // Only migrate_vma_setup collects addresses without a page.
                        src[i] &= ~MigratePfn.Migrate;
                        continue;
                    }

                    ulong address = start + ((ulong)i << PageSize.Shift);
                    if (!notified)
                    {
                        // Inserting may replace the zero page, which devices may mirror: one invalidation from here on.
                        range = new MmuNotifierRange(address, start + ((ulong)src.Length << PageSize.Shift), MmuNotifierEvent.Migrate, Owner: owner);
                        vma.Mm.InvalidateRangeStart(range);
                        notified = true;
                    }

                    src[i] = InsertPage(memory, vma, address, newPage, ref pte) ? MigratePfn.Migrate : src[i] & ~MigratePfn.Migrate;
                    continue;
                }

                if (!MigratePfn.IsMigrating(src[i]) || !CanMoveMapping(memory, page, newPage, faultPage))
                {
                    src[i] &= ~MigratePfn.Migrate;
                    continue;
                }

                MoveMapping(memory, page, newPage);
            }
        }
        finally
        {
            // The PTE lock goes before the notifiers run.
            pte.Release();
            if (notified)
            {
                vma!.Mm.InvalidateRangeEnd(range);
            }
        }
    }

    /// <summary>
    /// Whether the source's metadata may move to the destination (the checks of <c>__migrate_device_pages</c> and
    /// <c>folio_migrate_mapping</c>): a device destination takes only anonymous pages; a device destination must be
    /// private or coherent memory; file pages stay (this simulator does not move page-cache pages); and the source must
    /// hold exactly the references setup left: its own, and the fault path's for the fault page.
    /// </summary>
    private static bool CanMoveMapping(PhysicalMemory memory, Pfn page, Pfn newPage, Pfn? faultPage)
    {
        ref readonly PageFrame source = ref memory.Page(page);
        ref readonly PageFrame destination = ref memory.Page(newPage);
        if (destination.IsZoneDevice
            && DevPagemap.OfPage(memory, newPage) is not { Type: MemoryType.DevicePrivate or MemoryType.DeviceCoherent })
        {
            return false;
        }

        if (IsFilePage(source))
        {
            return false;
        }

        return source.RefCount == 1 + (faultPage == page ? 1 : 0);
    }

    /// <summary>Moves mapping, index and the anonymous-page flags to the destination (<c>folio_migrate_mapping</c>, <c>folio_migrate_flags</c>).</summary>
    private static void MoveMapping(PhysicalMemory memory, Pfn page, Pfn newPage)
    {
        ref PageFrame source = ref memory.Frame(page);
        ref PageFrame destination = ref memory.Frame(newPage);
        destination._mapping = source._mapping;
        destination._index = source._index;
        Interlocked.Or(ref destination._flags, (ulong)(source.Flags & MigratedFlags));
    }

    /// <summary>
    /// Maps a destination where setup found no page (<c>migrate_vma_insert_page</c>): only in an anonymous area, only if
    /// the entry is still none or the zero page (else a CPU fault won), as a device-private entry for device-private
    /// memory, a present entry otherwise, writable when the area is. The new page joins the area's anon_vma with a
    /// mapcount and a reference for the entry. The PTE lock stays held in <paramref name="pte"/> for the next hole, which is
    /// usually in the same table.
    /// </summary>
    private static bool InsertPage(PhysicalMemory memory, Vma vma, ulong address, Pfn newPage, ref HeldPteLock pte)
    {
        Mm mm = vma.Mm;
        if (!vma.IsAnonymous || vma.AnonVma is null || !mm.IsAlive)
        {
            return false;
        }

        bool writable = (vma.Flags & VmFlags.Write) != 0;
        ref PageFrame frame = ref memory.Frame(newPage);
        Pte entry;
        if (!frame.IsZoneDevice)
        {
            entry = Pte.Present(newPage, writable, dirty: writable);
        }
        else
        {
            switch (DevPagemap.OfPage(memory, newPage)?.Type)
            {
                case MemoryType.DevicePrivate:
                    entry = Pte.Software(PteKind.DevicePrivate, newPage, writable);
                    break;
                case MemoryType.DeviceCoherent:
                    entry = Pte.Present(newPage, writable, dirty: writable);
                    break;
                default:
                    return false;
            }
        }

        PteTable table = pte.AcquireOrAllocate(mm, address);
        int index = PageTable.PteIndex(address);
        Pte old = table.Read(index);
        if (!old.IsNone && !(old.IsPresent && old.Pfn == PhysicalMemory.ZeroPage))
        {
            return false;
        }

        frame._mapping = vma.AnonVma.Handle;
        frame._index = vma.PageIndex(address);
        Interlocked.Or(ref frame._flags, (ulong)(PageFlags.Anon | PageFlags.AnonExclusive | PageFlags.SwapBacked | PageFlags.Uptodate | PageFlags.Dirty));
        Interlocked.Increment(ref frame._mapCount);
        memory.GetPage(newPage);
        table.SetUnsynchronized(index, entry);
        return true;
    }

    /// <summary>Shared by <c>migrate_vma_finalize</c> and <c>migrate_device_finalize</c>.</summary>
    [SkipLocalsInit] // the batch buffer is written before it is read; zeroing it would cost a one-page migration more than it saves
    private static void FinalizePages(PhysicalMemory memory, Span<ulong> src, ReadOnlySpan<ulong> dst, Pfn? faultPage, MigrationReason reason)
    {
        // First every entry ends on its new page or back on the old one, with the pages still locked; a run of pages
        // of one anon_vma is restored under one hold of its rmap and list locks (the kernel takes them per folio; the
        // locks are only held longer). Then the pages are unlocked and released, so no driver callback (a page-free)
        // ever runs under a reverse-map lock.
        long moved = 0;
        long toDevice = 0;
        long toSystem = 0;
        var restorer = new EntryRestorer(memory);
        try
        {
            for (int i = 0; i < src.Length; i++)
            {
                if (!MigratePfn.TryGetPage(src[i], out Pfn page))
                {
                    // A hole migrate_vma_pages filled with the destination page: it now lives there too.
                    if (MigratePfn.IsMigrating(src[i]) && MigratePfn.TryGetPage(dst[i], out Pfn inserted))
                    {
                        CountDirection(memory, inserted, ref toDevice, ref toSystem);
                    }

                    continue;
                }

                // A destination whose metadata never moved (pages was skipped on an error path) is not a migration.
                bool migrated = MigratePfn.TryGetPage(dst[i], out Pfn newPage) && MigratePfn.IsMigrating(src[i])
                    && memory.Page(newPage).Mapping == memory.Page(page).Mapping;
                if (!migrated)
                {
                    src[i] &= ~MigratePfn.Migrate;
                }

                if (migrated)
                {
                    moved++;
                    CountDirection(memory, newPage, ref toDevice, ref toSystem);
                }

                restorer.Restore(page, migrated ? newPage : page);
            }
        }
        finally
        {
            restorer.Dispose();
        }

        // The old RAM pages this frees go back to the allocator in batches.
        var freed = new RamFreeBatch(memory, stackalloc ulong[64]);
        try
        {
            for (int i = 0; i < src.Length; i++)
            {
                bool hasNew = MigratePfn.TryGetPage(dst[i], out Pfn newPage);
                if (MigratePfn.TryGetPage(src[i], out Pfn page))
                {
                    if (faultPage != page)
                    {
                        UnlockAndPut(memory, page, ref freed);
                    }
                    else
                    {
                        memory.PutPageBatched(page, ref freed);
                    }
                }

                if (hasNew)
                {
                    UnlockAndPut(memory, newPage, ref freed);
                }
            }
        }
        finally
        {
            freed.Flush();
        }

        HmmMetrics.RecordMigration(toDevice, toSystem, reason);

        if (memory.Logger.IsEnabled(LogLevel.Debug))
        {
            Log.MigrationFinalized(memory.Logger, moved, src.Length);
        }
    }

    private static void CountDirection(PhysicalMemory memory, Pfn destination, ref long toDevice, ref long toSystem)
    {
        if (memory.Frame(destination).IsZoneDevice)
        {
            toDevice++;
        }
        else
        {
            toSystem++;
        }
    }

    /// <summary>
    /// Releases a page this migration holds locked and referenced: unlock, then put, as the kernel does. The reference
    /// must outlive the lock: put first, and a concurrent unmap could drop the mapping's reference, the last one, and
    /// free the page while it is still locked. A faulting thread that takes the lock in between sees this reference as
    /// a pin, skips the page and retries its fault, as in the kernel.
    /// </summary>
    [SkipLocalsInit]
    private static void UnlockAndPut(PhysicalMemory memory, Pfn page)
    {
        var freed = new RamFreeBatch(memory, stackalloc ulong[1]);
        UnlockAndPut(memory, page, ref freed);
        freed.Flush();
    }

    /// <summary>As <see cref="UnlockAndPut(PhysicalMemory, Pfn)"/>, leaving a RAM page it frees in <paramref name="freed"/>.</summary>
    private static void UnlockAndPut(PhysicalMemory memory, Pfn page, ref RamFreeBatch freed)
    {
        memory.UnlockPage(page);
        memory.PutPageBatched(page, ref freed);
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNoVma() => throw new HmmException(Errno.EINVAL, "migrate_vma: no area given (Vma is null).");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowDetached(Vma vma) =>
        throw new HmmException(Errno.EINVAL, $"migrate_vma: area {vma} is no longer an area of address space '{vma.Mm.Name}' (unmapped, split or moved).");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowSpecial(Vma vma) =>
        throw new HmmException(Errno.EINVAL, $"migrate_vma: area {vma} of '{vma.Mm.Name}' is an I/O, PFN-map, mixed-map or non-expandable mapping (VM_SPECIAL), which holds no migratable pages.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowRange(ulong start, ulong end, Vma vma) =>
        throw new HmmException(Errno.EINVAL, $"migrate_vma: range [0x{start:x}, 0x{end:x}) must be page aligned, non-empty and inside area {vma} of '{vma.Mm.Name}'.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowArrays(int srcLength, int dstLength, ulong npages) =>
        throw new HmmException(Errno.EINVAL, $"migrate: src ({srcLength} entries) and dst ({dstLength} entries) must each hold {npages} entries.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowFaultPage(Pfn page) =>
        throw new HmmException(Errno.EINVAL, $"migrate_vma: fault page {page} must be a locked device-private page (the one the fault path passed to migrate_to_ram).");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNotSetUp(ulong npages, ulong start, ulong end) =>
        throw new HmmException(Errno.EINVAL, $"migrate_vma: the descriptor was not set up by VmaSetup for [0x{start:x}, 0x{end:x}) (npages {npages}), or its arrays or range changed since.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowEmptyDeviceRange() => throw new HmmException(Errno.EINVAL, "migrate_device: no PFNs given.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNoStructPage(Pfn pfn) => throw new HmmException(Errno.EINVAL, $"migrate_device: {pfn} has no struct page.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowBadDestination(int index, Pfn page) =>
        throw new KernelBugException($"migrate: destination {index} ({page}) must be a present page the driver references and has locked (lock_page or zone_device_page_init), and not the fault page.");
}
