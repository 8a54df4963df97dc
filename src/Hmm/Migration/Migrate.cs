using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

namespace Hmm;

/// <summary>
/// Moving pages between System RAM and device memory (<c>mm/migrate_device.c</c>): <c>migrate_vma_setup</c>,
/// <c>migrate_vma_pages</c>, <c>migrate_vma_finalize</c> over a range of one area, and
/// <c>migrate_device_range</c>/<c>migrate_device_pfns</c>, <c>migrate_device_pages</c>, <c>migrate_device_finalize</c>
/// over device PFNs, found through the reverse map.
/// </summary>
/// <remarks>
/// <para>The protocol: setup collects pages, takes a reference and the page lock of each (a trylock: a contended
/// page is simply not migrated), replaces every mapping with a migration entry and drops the mappings' counts. A
/// page that is still mapped afterwards or has references beyond the expected ones (a pin, a GUP reference) gets
/// its entries back at once and is reported as not migrating. The driver allocates locked destination pages and
/// copies; pages moves the page metadata (mapping, index, flags) and inserts pages for holes; finalize points every
/// migration entry at the new page, or back at the old one, unlocks and drops the references, so an old page is
/// freed through its own path (RAM allocator or the pagemap's <see cref="IDevPagemapOps.PageFree"/>).</para>
/// <para>Locking: <c>migrate_vma_*</c> run with the area's mmap lock held, shared or exclusive, from setup to
/// finalize; <c>migrate_device_*</c> need no mmap lock. Page locks are taken with a trylock only, so two
/// migrations never wait for each other; PTE locks are taken one at a time, inside page locks; notifier callbacks
/// run with no PTE lock held. A CPU access that meets a migration entry waits for the page lock without holding a
/// reference (<c>migration_entry_wait</c>) and then sees the final page.</para>
/// <para>Error model: invalid arguments throw <see cref="HmmException"/> (<see cref="Errno.EINVAL"/>) before anything
/// changes; calling a step without the mmap lock, or handing destinations that are not locked and referenced, is a
/// <see cref="KernelBugException"/>. Pages that cannot move are not errors: their <see cref="MigratePfn.Migrate"/> bit is cleared.</para>
/// </remarks>
public static partial class Migrate
{
    private const VmFlags SpecialFlags = VmFlags.Io | VmFlags.DontExpand | VmFlags.PfnMap | VmFlags.MixedMap;

    /// <summary>
    /// Collects, locks and unmaps the pages of <c>[Start, End)</c> of <see cref="MigrateVma.Vma"/> (<c>migrate_vma_setup</c>).
    /// On return <see cref="MigrateVma.Src"/> says, per page, what migrates: a page (<see cref="MigratePfn.Valid"/> |
    /// <see cref="MigratePfn.Migrate"/> [| <see cref="MigratePfn.Write"/>]), an address with no page yet
    /// (<see cref="MigratePfn.Migrate"/> alone), or nothing (0); <see cref="MigrateVma.CPages"/> counts the migrating
    /// entries and <see cref="MigrateVma.NPages"/> the range. Collecting nothing is not an error.
    /// </summary>
    /// <remarks>
    /// What is collected: a hole of an anonymous area always (a driver may place a fresh page there); the zero page
    /// and System RAM pages with <see cref="MigrateVmaSelect.System"/>; device-private pages with
    /// <see cref="MigrateVmaSelect.DevicePrivate"/> and device-coherent pages with <see cref="MigrateVmaSelect.DeviceCoherent"/>,
    /// each only when its pagemap's owner is <see cref="MigrateVma.PgmapOwner"/>. Not collected: holes of file or shared
    /// areas, pages without a mapping, migration and device-exclusive entries, pages whose lock is contended, pinned
    /// exclusive anonymous pages. The interval notifiers see one <see cref="MmuNotifierEvent.Migrate"/> invalidation of
    /// the range with <see cref="MmuNotifierRange.Owner"/> = <see cref="MigrateVma.PgmapOwner"/>.
    /// </remarks>
    /// <param name="args">The caller's descriptor.</param>
    /// <exception cref="HmmException">
    /// <see cref="Errno.EINVAL"/>, with nothing changed: no area; the area no longer belongs to its address space; an I/O,
    /// PFN-map, mixed-map or non-expandable area; <see cref="MigrateVma.Start"/> or <see cref="MigrateVma.End"/> not page
    /// aligned (the kernel masks them; here that is a caller bug reported as such); an empty range or one not inside the
    /// area; <see cref="MigrateVma.Src"/> or <see cref="MigrateVma.Dst"/> shorter than the range; a
    /// <see cref="MigrateVma.FaultPage"/> that is not a locked device-private page.
    /// </exception>
    /// <exception cref="KernelBugException">The area's mmap lock is not held by the caller.</exception>
    public static void VmaSetup(ref MigrateVma args)
    {
        Vma vma = ValidateSetup(ref args, out int npages);
        PhysicalMemory memory = vma.Mm.Memory;
        Span<ulong> src = args.Src[..npages];
        Span<ulong> dst = args.Dst[..npages];
        src.Clear();
        dst.Clear();
        args.CPages = 0;
        args.NPages = 0;

        ulong collected = Collect(vma, args.Start, args.End, src, args.Flags, args.PgmapOwner, args.FaultPage);
        args.NPages = (ulong)npages;
        args.CPages = collected == 0 ? 0 : Unmap(memory, src, args.FaultPage);
        if (memory.Trace.IsEnabled)
        {
            TraceSetup(memory, args.Flags, args.Start, src, args.CPages, args.PgmapOwner);
        }

        if (memory.Logger.IsEnabled(LogLevel.Debug))
        {
            Log.MigrateVmaSetUp(memory.Logger, vma.Mm.Name, args.Start, args.End, args.Flags, args.CPages, args.NPages);
        }
    }

    /// <summary>
    /// Moves the metadata of each migrating page to its destination and inserts destinations for addresses with no
    /// page yet (<c>migrate_vma_pages</c>). Afterwards <see cref="MigratePfn.Migrate"/> in <see cref="MigrateVma.Src"/>
    /// marks exactly the pages that migrate; it is cleared where there is no destination, where a hole was filled
    /// meanwhile (a CPU fault won), where the area is not anonymous, for file pages, for destinations of an unsupported
    /// device memory type, and where the source gained a reference since setup.
    /// </summary>
    /// <param name="args">The descriptor setup filled, with <see cref="MigrateVma.Dst"/> set by the driver.</param>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: no area, or setup has not run on this descriptor; nothing changes.</exception>
    /// <exception cref="KernelBugException">
    /// The mmap lock is not held, or a destination is not a present, referenced and locked page (<c>lock_page</c>);
    /// nothing changes.
    /// </exception>
    public static void VmaPages(ref MigrateVma args)
    {
        Vma vma = ValidateStep(ref args);
        int npages = (int)args.NPages;
        ValidateDestinations(vma.Mm.Memory, args.Dst[..npages], args.FaultPage);
        MovePages(vma.Mm.Memory, args.Src[..npages], args.Dst[..npages], vma, args.Start, args.PgmapOwner, args.FaultPage);
        if (vma.Mm.Memory.Trace.IsEnabled)
        {
            TracePages(vma.Mm.Memory, args.Start, args.Src[..npages], args.Dst[..npages], args.PgmapOwner);
        }
    }

    /// <summary>
    /// Ends the migration (<c>migrate_vma_finalize</c>): every migration entry now maps the destination if the page
    /// migrated, or the source again if not; sources and destinations are unlocked (except
    /// <see cref="MigrateVma.FaultPage"/>) and the references setup and the driver took are dropped, which frees old
    /// pages. Always call it after a successful setup, also on a driver's error path.
    /// </summary>
    /// <param name="args">The descriptor.</param>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: no area, or setup has not run on this descriptor; nothing changes.</exception>
    /// <exception cref="KernelBugException">The mmap lock is not held, or a destination is not a present, referenced and locked page; nothing changes.</exception>
    public static void VmaFinalize(ref MigrateVma args)
    {
        Vma vma = ValidateStep(ref args);
        int npages = (int)args.NPages;
        ValidateDestinations(vma.Mm.Memory, args.Dst[..npages], args.FaultPage);
        if (vma.Mm.Memory.Trace.IsEnabled)
        {
            TraceFinalize(vma.Mm.Memory, args.Start, args.Src[..npages], args.Dst[..npages], args.PgmapOwner);
        }

        FinalizePages(vma.Mm.Memory, args.Src[..npages], args.Dst[..npages], args.FaultPage, args.FaultPage.HasValue ? MigrationReason.CpuFault : MigrationReason.Explicit);
    }

    /// <summary>
    /// Starts moving the device pages <c>[start, start + src.Length)</c> back to System RAM without knowing where they
    /// are mapped (<c>migrate_device_range</c>), as a driver does before it frees its memory. Each page in use is
    /// referenced and trylocked; each of its mappings, in every process (forked children included), is found through
    /// the reverse map and replaced by a migration entry. <paramref name="src"/> then holds, per PFN, a migrating entry
    /// or 0 (a free page, a contended lock, a pinned page). Continue with <see cref="DevicePages"/> and <see cref="DeviceFinalize"/>.
    /// </summary>
    /// <param name="memory">The memory holding the pages.</param>
    /// <param name="src">Receives one entry per PFN; its length is the number of pages.</param>
    /// <param name="start">The first PFN.</param>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: empty, or a PFN in the range has no struct page; nothing changes.</exception>
    public static void DeviceRange(PhysicalMemory memory, Span<ulong> src, Pfn start)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (src.IsEmpty)
        {
            ThrowEmptyDeviceRange();
        }

        for (int i = 0; i < src.Length; i++)
        {
            if (!memory.IsPresent(start + (ulong)i))
            {
                ThrowNoStructPage(start + (ulong)i);
            }
        }

        for (int i = 0; i < src.Length; i++)
        {
            src[i] = LockDevicePfn(memory, start + (ulong)i);
        }

        ulong selected = Unmap(memory, src, faultPage: null);
        if (memory.Trace.IsEnabled && CollectedAny(src))
        {
            TraceSetup(memory, MigrateVmaSelect.None, DeviceRangeStart(src), src, selected, owner: null);
        }
    }

    /// <summary>
    /// As <see cref="DeviceRange"/> for a list of PFNs that need not be contiguous (<c>migrate_device_pfns</c>): on
    /// entry each element of <paramref name="pfns"/> is a PFN (not encoded); on return it is the source entry.
    /// </summary>
    /// <param name="memory">The memory holding the pages.</param>
    /// <param name="pfns">The PFNs, replaced by the source entries.</param>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: empty, or a PFN has no struct page; nothing changes.</exception>
    public static void DevicePfns(PhysicalMemory memory, Span<ulong> pfns)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (pfns.IsEmpty)
        {
            ThrowEmptyDeviceRange();
        }

        foreach (ulong pfn in pfns)
        {
            if (!memory.IsPresent(new Pfn(pfn)))
            {
                ThrowNoStructPage(new Pfn(pfn));
            }
        }

        for (int i = 0; i < pfns.Length; i++)
        {
            pfns[i] = LockDevicePfn(memory, new Pfn(pfns[i]));
        }

        ulong selected = Unmap(memory, pfns, faultPage: null);
        if (memory.Trace.IsEnabled && CollectedAny(pfns))
        {
            TraceSetup(memory, MigrateVmaSelect.None, DeviceRangeStart(pfns), pfns, selected, owner: null);
        }
    }

    /// <summary>
    /// Moves the metadata of each migrating page of a <see cref="DeviceRange"/> to its destination
    /// (<c>migrate_device_pages</c>); see <see cref="VmaPages"/> for when <see cref="MigratePfn.Migrate"/> is cleared.
    /// </summary>
    /// <param name="memory">The memory holding the pages.</param>
    /// <param name="src">The entries <see cref="DeviceRange"/> returned.</param>
    /// <param name="dst">The driver's locked destinations, one per entry (0 to skip).</param>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: <paramref name="dst"/> is shorter than <paramref name="src"/>; nothing changes.</exception>
    /// <exception cref="KernelBugException">A destination is not a present, referenced and locked page; nothing changes.</exception>
    public static void DevicePages(PhysicalMemory memory, Span<ulong> src, ReadOnlySpan<ulong> dst)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (dst.Length < src.Length)
        {
            ThrowArrays(src.Length, dst.Length, (ulong)src.Length);
        }

        ValidateDestinations(memory, dst[..src.Length], faultPage: null);
        MovePages(memory, src, dst[..src.Length], vma: null, start: 0, owner: null, faultPage: null);
        if (memory.Trace.IsEnabled && CollectedAny(src))
        {
            TracePages(memory, DeviceRangeStart(src), src, dst[..src.Length], owner: null);
        }
    }

    /// <summary>Ends a <see cref="DeviceRange"/> migration (<c>migrate_device_finalize</c>); see <see cref="VmaFinalize"/>.</summary>
    /// <param name="memory">The memory holding the pages.</param>
    /// <param name="src">The entries after <see cref="DevicePages"/>.</param>
    /// <param name="dst">The destinations.</param>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: <paramref name="dst"/> is shorter than <paramref name="src"/>; nothing changes.</exception>
    /// <exception cref="KernelBugException">A destination is not a present, referenced and locked page; nothing changes.</exception>
    public static void DeviceFinalize(PhysicalMemory memory, Span<ulong> src, ReadOnlySpan<ulong> dst)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (dst.Length < src.Length)
        {
            ThrowArrays(src.Length, dst.Length, (ulong)src.Length);
        }

        ValidateDestinations(memory, dst[..src.Length], faultPage: null);
        if (memory.Trace.IsEnabled && CollectedAny(src))
        {
            TraceFinalize(memory, DeviceRangeStart(src), src, dst[..src.Length], owner: null);
        }

        FinalizePages(memory, src, dst[..src.Length], faultPage: null, MigrationReason.Eviction);
    }

    /// <summary>
    /// Moves one device-coherent page to System RAM so that it can be pinned long-term (<c>migrate_device_coherent_folio</c>,
    /// called by GUP: coherent memory must never be pinned). The caller hands over one reference on the page, which
    /// the migration consumes either way.
    /// </summary>
    /// <returns>True when the page moved; false (the kernel's <c>-EBUSY</c>) when it is pinned, or no RAM page was free.</returns>
    internal static bool DeviceCoherentPage(PhysicalMemory memory, Pfn page)
    {
        Span<ulong> src = [MigratePfn.FromPfn(page) | MigratePfn.Migrate];
        Span<ulong> dst = [0];
        memory.LockPage(page);
        ulong selected = Unmap(memory, src, faultPage: null);
        bool traced = memory.Trace.IsEnabled;
        if (traced)
        {
            TraceSetup(memory, MigrateVmaSelect.None, page.PhysicalAddress, src, selected, owner: null);
        }

        if (!MigratePfn.IsMigrating(src[0]))
        {
            return false;
        }

        if (memory.TryAllocatePage(out Pfn ram))
        {
            memory.LockPage(ram);
            dst[0] = MigratePfn.FromPfn(ram);
        }

        MovePages(memory, src, dst, vma: null, start: 0, owner: null, faultPage: null);
        if (traced)
        {
            TracePages(memory, page.PhysicalAddress, src, dst, owner: null);
        }

        if (MigratePfn.IsMigrating(src[0]))
        {
            memory.PageData(page).CopyTo(memory.PageData(ram));
        }

        if (traced)
        {
            TraceFinalize(memory, page.PhysicalAddress, src, dst, owner: null);
        }

        FinalizePages(memory, src, dst, faultPage: null, MigrationReason.Pin);
        return MigratePfn.IsMigrating(src[0]);
    }

    private static Vma ValidateSetup(ref MigrateVma args, out int npages)
    {
        Vma? vma = args.Vma;
        if (vma is null)
        {
            ThrowNoVma();
        }

        Mm mm = vma.Mm;
        mm.AssertMmapLocked();
        if (mm.Vmas.Find(vma.Start) != vma)
        {
            ThrowDetached(vma);
        }

        if ((vma.Flags & SpecialFlags) != 0)
        {
            ThrowSpecial(vma);
        }

        ulong start = args.Start;
        ulong end = args.End;
        if (!PageSize.IsAligned(start) || !PageSize.IsAligned(end) || end <= start || start < vma.Start || end > vma.End
            || (end - start) >> PageSize.Shift > int.MaxValue)
        {
            ThrowRange(start, end, vma);
        }

        npages = (int)((end - start) >> PageSize.Shift);
        if (args.Src.Length < npages || args.Dst.Length < npages)
        {
            ThrowArrays(args.Src.Length, args.Dst.Length, (ulong)npages);
        }

        if (args.FaultPage is { } faultPage && !IsLockedDevicePrivatePage(mm.Memory, faultPage))
        {
            ThrowFaultPage(faultPage);
        }

        return vma;
    }

    private static Vma ValidateStep(ref MigrateVma args)
    {
        Vma? vma = args.Vma;
        if (vma is null)
        {
            ThrowNoVma();
        }

        vma.Mm.AssertMmapLocked();
        if (args.NPages == 0 || args.NPages != (args.End - args.Start) >> PageSize.Shift
            || (ulong)args.Src.Length < args.NPages || (ulong)args.Dst.Length < args.NPages)
        {
            ThrowNotSetUp(args.NPages, args.Start, args.End);
        }

        return vma;
    }

    /// <summary>Every valid destination must be a present page the driver references and has locked, as finalize unlocks and puts it.</summary>
    private static void ValidateDestinations(PhysicalMemory memory, ReadOnlySpan<ulong> dst, Pfn? faultPage)
    {
        for (int i = 0; i < dst.Length; i++)
        {
            if (!MigratePfn.TryGetPage(dst[i], out Pfn page))
            {
                continue;
            }

            ref PageFrame frame = ref memory.FrameIfPresent(page);
            if (Unsafe.IsNullRef(ref frame) || frame.RefCount <= 0 || !frame.IsLocked || page == faultPage)
            {
                ThrowBadDestination(i, page);
            }
        }
    }

    private static bool IsLockedDevicePrivatePage(PhysicalMemory memory, Pfn page)
    {
        ref PageFrame frame = ref memory.FrameIfPresent(page);
        return !Unsafe.IsNullRef(ref frame) && frame.IsLocked && frame.IsZoneDevice
            && memory.FindZoneDeviceOwner(frame.PagemapId) is DevPagemap { Type: MemoryType.DevicePrivate };
    }
}
