
namespace Hmm;

// Special areas: what a driver's mmap (file_operations.mmap) builds. The driver maps an area of its own
// (MmapSpecial, which stands for the mmap system call on the driver's file), then fills it: vm_insert_page puts
// refcounted struct pages into a VM_MIXEDMAP area, remap_pfn_range and vmf_insert_pfn put special entries (no page
// reference, the _PAGE_SPECIAL bit) into a VM_PFNMAP area. No fault handler refills such an area: a hole faults
// SIGBUS. Zap, exit, fork and mprotect treat the entries as the kernel does: inserted pages hold a reference and a
// mapcount but no reverse map (a driver page has no anon_vma and no file), special entries hold nothing.
public sealed partial class Mm
{
    private const VmFlags DriverSettableFlags = Vma.SpecialFlags | VmFlags.DontExpand | VmFlags.DontCopy;

    /// <summary>
    /// Creates an area for a driver to fill, as <c>mmap</c> of a device file does before it calls the driver's
    /// <c>mmap</c> handler, which sets <paramref name="special"/> on the new area.
    /// </summary>
    /// <param name="address">With <see cref="MapFlags.Fixed"/> or <see cref="MapFlags.FixedNoReplace"/> the exact address; otherwise a hint (0 for none).</param>
    /// <param name="length">Bytes, rounded up to whole pages.</param>
    /// <param name="protection">The access allowed.</param>
    /// <param name="flags"><see cref="MapFlags.Shared"/> or <see cref="MapFlags.Private"/> (not anonymous), optionally fixed.</param>
    /// <param name="special">
    /// What the driver sets on the area: at least one of <see cref="VmFlags.Io"/>, <see cref="VmFlags.PfnMap"/>,
    /// <see cref="VmFlags.MixedMap"/> (not both of the last two), optionally <see cref="VmFlags.DontExpand"/> and
    /// <see cref="VmFlags.DontCopy"/>.
    /// </param>
    /// <returns>The address of the new, empty area.</returns>
    /// <exception cref="HmmException">
    /// Error model: invalid arguments, nothing changes. <see cref="Errno.EINVAL"/>: bad <paramref name="special"/>
    /// flags, <see cref="MapFlags.Anonymous"/>, or any argument <see cref="Mmap"/> refuses with EINVAL; otherwise the
    /// errors of <see cref="Mmap"/> (ENOMEM, EPERM, EEXIST, ESRCH).
    /// </exception>
    public ulong MmapSpecial(ulong address, ulong length, Protection protection, MapFlags flags, VmFlags special)
    {
        if ((special & ~DriverSettableFlags) != 0 || (special & Vma.SpecialFlags) == 0
            || (special & (VmFlags.PfnMap | VmFlags.MixedMap)) == (VmFlags.PfnMap | VmFlags.MixedMap))
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"A driver area takes Io, PfnMap or MixedMap (not both of the last two), plus DontExpand or DontCopy; not {special}.");
        }

        MapFlags type = flags & MapFlags.SharedValidate;
        if ((flags & ~(MapFlags.SharedValidate | MapFlags.Fixed | MapFlags.FixedNoReplace)) != 0 || type == MapFlags.None)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"mmap flags {flags} of a driver area: one mapping type, optionally fixed, never anonymous.");
        }

        if ((protection & ~(Protection.ReadWrite | Protection.Exec)) != 0 || length == 0)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"mmap of {length} bytes with protection {protection}: length must be positive and protection known.");
        }

        ulong size = RoundUpToPage(length);
        if (size == 0 || size > TaskSize)
        {
            ThrowHelper.ThrowHmm(Errno.ENOMEM, $"{length} bytes do not fit in the address space.");
        }

        if ((flags & (MapFlags.Fixed | MapFlags.FixedNoReplace)) != 0)
        {
            ValidateFixed(address, size);
        }

        bool shared = (flags & MapFlags.Shared) != 0;
        VmFlags vmFlags = ToVmFlags(protection) | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec | special
            | (shared ? VmFlags.Shared | VmFlags.MayShare : VmFlags.None);
        using MmapLockGuard guard = MmapWriteLock();
        ulong start = PlaceUnsynchronized(address, size, flags);
        var vma = new Vma(this, start, start + size, vmFlags, file: null, start >> PageSize.Shift, anonVma: null);
        InsertNewAreaUnsynchronized(vma, flags);
        Log.Mapped(Logger, Name, start, start + size, vmFlags);
        return start;
    }

    /// <summary>
    /// Maps a driver's page into a special area (<c>vm_insert_page</c>): the entry holds a page reference and a
    /// mapcount, with no reverse map. It is writable only in a shared writable area; in a private one it is
    /// read-only, and a write copies it (the kernel's copy-on-write protection). An area with neither
    /// <see cref="VmFlags.PfnMap"/> nor <see cref="VmFlags.MixedMap"/> becomes <see cref="VmFlags.MixedMap"/>.
    /// </summary>
    /// <param name="vma">A special area of this address space, from <see cref="MmapSpecial"/>.</param>
    /// <param name="address">A page-aligned address.</param>
    /// <param name="page">A System RAM or device page the caller holds a reference to: not anonymous, not the zero page, not device-private.</param>
    /// <returns>
    /// Error model: the kernel's return code. <see cref="Errno.None"/> (0); <see cref="Errno.EFAULT"/>: the address is outside the area;
    /// <see cref="Errno.EINVAL"/>: an unaligned address, or a page that cannot be inserted (no struct page, free,
    /// anonymous, the zero page, device-private); <see cref="Errno.EBUSY"/>: an entry is already there. Nothing changes on an error.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="vma"/> is null.</exception>
    /// <exception cref="HmmException">
    /// Error model: invalid arguments, nothing changes. <see cref="Errno.EINVAL"/>: <paramref name="vma"/> belongs to
    /// another address space or is not a special area; <see cref="Errno.EFAULT"/>: <paramref name="vma"/> is stale.
    /// </exception>
    /// <exception cref="KernelBugException">
    /// The kernel's BUG_ON: the mmap lock is not held (for writing when the area must become mixed-map), or the area is <see cref="VmFlags.PfnMap"/>.
    /// </exception>
    public Errno InsertPage(Vma vma, ulong address, Pfn page)
    {
        ArgumentNullException.ThrowIfNull(vma);
        AssertMmapLocked();
        Errno outside = CheckDriverArea(vma, address);
        if (outside != 0)
        {
            return outside;
        }

        if ((vma.Flags & VmFlags.PfnMap) != 0)
        {
            ThrowHelper.ThrowBug($"vm_insert_page into PFN-map area {vma}.");
        }

        if ((vma.Flags & VmFlags.MixedMap) == 0)
        {
            AssertMmapWriteLocked();
        }

        if (!PageSize.IsAligned(address) || !CanInsertPage(page))
        {
            return Errno.EINVAL;
        }

        PteTable table = _pageTable.FindOrAllocate(address);
        int index = PageTable.PteIndex(address);
        lock (table.Lock)
        {
            if (!table.Read(index).IsNone)
            {
                return Errno.EBUSY;
            }

            Memory.GetPage(page);
            Interlocked.Increment(ref Memory.Frame(page)._mapCount);
            table.SetUnsynchronized(index, Pte.Present(page, writable: IsSharedWritable(vma)));
        }

        vma.Flags |= VmFlags.MixedMap;
        return Errno.None;
    }

    /// <summary>
    /// Maps a frame into a special area without a page reference (<c>vmf_insert_pfn</c>): a special entry, writable
    /// only in a shared writable area. The frame need not have a struct page (device I/O memory); the CPU then cannot
    /// read or write it here (<see cref="Read"/> and <see cref="Write"/> fail with EFAULT).
    /// </summary>
    /// <param name="vma">A <see cref="VmFlags.PfnMap"/> or <see cref="VmFlags.MixedMap"/> area of this address space.</param>
    /// <param name="address">An address in the area; rounded down to its page.</param>
    /// <param name="pfn">The frame.</param>
    /// <returns>
    /// Error model: the kernel's <c>vm_fault_t</c>. <see cref="VmFaultResult.None"/> (the kernel's <c>VM_FAULT_NOPAGE</c>):
    /// the entry is there, also when one already was (it is left as it was); <see cref="VmFaultResult.Sigbus"/>: the
    /// address is outside the area.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="vma"/> is null.</exception>
    /// <exception cref="HmmException">
    /// Error model: invalid arguments, nothing changes. <see cref="Errno.EINVAL"/>: <paramref name="vma"/> belongs to
    /// another address space, or the frame number does not fit an entry; <see cref="Errno.EFAULT"/>: <paramref name="vma"/> is stale.
    /// </exception>
    /// <exception cref="KernelBugException">The kernel's BUG_ON: the mmap lock is not held, or the area is neither PFN-map nor mixed-map.</exception>
    public VmFaultResult InsertPfn(Vma vma, ulong address, Pfn pfn)
    {
        ArgumentNullException.ThrowIfNull(vma);
        AssertMmapLocked();
        if (CheckDriverArea(vma, address) != 0)
        {
            return VmFaultResult.Sigbus;
        }

        if ((vma.Flags & (VmFlags.PfnMap | VmFlags.MixedMap)) == 0)
        {
            ThrowHelper.ThrowBug($"vmf_insert_pfn into {vma}, which is neither PFN-map nor mixed-map.");
        }

        ThrowIfPfnTooLarge(pfn, 1);
        address &= PageSize.Mask;
        InstallIfNone(_pageTable.FindOrAllocate(address), PageTable.PteIndex(address), Pte.PresentSpecial(pfn, IsSharedWritable(vma)));
        return VmFaultResult.None;
    }

    /// <summary>
    /// Maps a run of frames into a special area without page references (<c>remap_pfn_range</c>): special entries,
    /// writable only in a shared writable area. The area becomes <see cref="VmFlags.Io"/>, <see cref="VmFlags.PfnMap"/>
    /// and <see cref="VmFlags.DontExpand"/>, as the kernel marks it: GUP and <c>hmm_range_fault</c> refuse it.
    /// </summary>
    /// <param name="vma">A special area of this address space that is not <see cref="VmFlags.MixedMap"/>. The caller holds the mmap lock for writing.</param>
    /// <param name="address">The first address, page aligned.</param>
    /// <param name="pfn">The first frame.</param>
    /// <param name="size">Bytes, rounded up to whole pages.</param>
    /// <returns>Error model: the kernel's return code. <see cref="Errno.None"/> (0); <see cref="Errno.EINVAL"/>: an unaligned address, a zero size, or a range beyond the area. Nothing changes on an error.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="vma"/> is null.</exception>
    /// <exception cref="HmmException">
    /// Error model: invalid arguments, nothing changes. <see cref="Errno.EINVAL"/>: <paramref name="vma"/> belongs to
    /// another address space, is not a special area, is mixed-map, or the frames do not fit an entry;
    /// <see cref="Errno.EFAULT"/>: <paramref name="vma"/> is stale or <paramref name="address"/> is outside it.
    /// </exception>
    /// <exception cref="KernelBugException">The kernel's BUG_ON, nothing changes: the mmap write lock is not held, or an entry in the range is not empty.</exception>
    public Errno RemapPfnRange(Vma vma, ulong address, Pfn pfn, ulong size)
    {
        ArgumentNullException.ThrowIfNull(vma);
        AssertMmapWriteLocked();
        ThrowIfNotCurrentArea(vma, address);
        if (!vma.IsSpecial || (vma.Flags & VmFlags.MixedMap) != 0)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"remap_pfn_range needs a special area from MmapSpecial that is not mixed-map; {vma} is not.");
        }

        ulong bytes = RoundUpToPage(size);
        if (!PageSize.IsAligned(address) || bytes == 0 || bytes > vma.End - address)
        {
            return Errno.EINVAL;
        }

        ulong pages = bytes >> PageSize.Shift;
        ThrowIfPfnTooLarge(pfn, pages);
        ulong end = address + bytes;
        ForEachEntry(address, end, static (_, _, pte, mm) => ThrowHelper.ThrowBug($"remap_pfn_range over a non-empty entry ({pte}) in '{mm.Name}'."));

        bool writable = IsSharedWritable(vma);
        for (ulong i = 0; i < pages; i++)
        {
            ulong at = address + (i << PageSize.Shift);
            InstallIfNone(_pageTable.FindOrAllocate(at), PageTable.PteIndex(at), Pte.PresentSpecial(pfn + i, writable));
        }

        vma.Flags |= VmFlags.Io | VmFlags.PfnMap | VmFlags.DontExpand;
        return Errno.None;
    }

    private static bool IsSharedWritable(Vma vma) => (vma.Flags & (VmFlags.Shared | VmFlags.Write)) == (VmFlags.Shared | VmFlags.Write);

    /// <summary>EFAULT when <paramref name="address"/> is outside the area (a returned kernel error); throws for an area that is foreign, stale or not special.</summary>
    private Errno CheckDriverArea(Vma vma, ulong address)
    {
        if (vma.Mm != this)
        {
            ThrowForeignArea(vma);
        }

        if (_vmas.Find(vma.Start) != vma)
        {
            ThrowStaleArea(vma, vma.Start);
        }

        if (!vma.IsSpecial)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"Drivers insert entries only into special areas (MmapSpecial); {vma} is not one.");
        }

        return vma.Contains(address) ? 0 : Errno.EFAULT;
    }

    private bool CanInsertPage(Pfn page)
    {
        if (page == PhysicalMemory.ZeroPage || !Memory.IsPresent(page))
        {
            return false;
        }

        ref readonly PageFrame frame = ref Memory.Page(page);
        if (frame.RefCount <= 0 || (frame.Flags & (PageFlags.Anon | PageFlags.Reserved)) != 0)
        {
            return false;
        }

        return !frame.IsZoneDevice || DevPagemap.OfPage(Memory, page)?.Type != MemoryType.DevicePrivate;
    }

    private static void ThrowIfPfnTooLarge(Pfn pfn, ulong pages)
    {
        const ulong PfnLimit = 1UL << 40;
        if (pfn.Value >= PfnLimit || pages > PfnLimit - pfn.Value)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"{pages} frame(s) from {pfn} do not fit a page-table entry (40-bit frame numbers).");
        }
    }
}
