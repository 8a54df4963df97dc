
namespace Hmm;

// mmap, munmap, mprotect, madvise: the calls that create, remove and change areas. Each validates everything
// before changing anything, then takes the mmap lock for writing; every change to existing entries is bracketed
// by a notifier invalidation with the event the kernel uses.
public sealed partial class Mm
{
    private const MapFlags KnownMapFlags = MapFlags.Shared | MapFlags.Private | MapFlags.Fixed | MapFlags.Anonymous | MapFlags.FixedNoReplace;
    private const ulong PmdSize = 2UL << 20;

    /// <summary>Creates a mapping (<c>mmap</c>).</summary>
    /// <param name="address">With <see cref="MapFlags.Fixed"/> or <see cref="MapFlags.FixedNoReplace"/> the exact address; otherwise a hint (0 for none).</param>
    /// <param name="length">Bytes, rounded up to whole pages.</param>
    /// <param name="protection">The access allowed.</param>
    /// <param name="flags">
    /// One of <see cref="MapFlags.Shared"/>, <see cref="MapFlags.Private"/> or, for a file, <see cref="MapFlags.SharedValidate"/>
    /// (shared, with every other flag checked); plus <see cref="MapFlags.Anonymous"/> for memory without a file.
    /// </param>
    /// <param name="file">The backing file, for a mapping without <see cref="MapFlags.Anonymous"/>; its page cache must live in <see cref="Memory"/>.</param>
    /// <param name="offset">The file offset, page aligned; checked but otherwise ignored for anonymous memory.</param>
    /// <returns>The address of the new mapping.</returns>
    /// <exception cref="HmmException">
    /// Error model: invalid arguments, with the kernel's errno; nothing changes. <see cref="Errno.EINVAL"/>: length 0,
    /// unknown flags (the kernel ignores them without <see cref="MapFlags.SharedValidate"/>; the simulator refuses them),
    /// no mapping type, <see cref="MapFlags.SharedValidate"/> for anonymous memory, a fixed address or offset not page
    /// aligned, a file with an anonymous mapping or none without, a file of another <see cref="PhysicalMemory"/>, or
    /// anonymous shared memory (taken from <see cref="Vma.File"/>) whose last mapping is gone;
    /// <see cref="Errno.EOPNOTSUPP"/>: an unknown flag with <see cref="MapFlags.SharedValidate"/>; <see cref="Errno.ENOMEM"/>:
    /// the range does not fit below <see cref="TaskSize"/> or no free area is large enough; <see cref="Errno.EPERM"/>: a
    /// fixed address below <see cref="MinimumAddress"/>; <see cref="Errno.EEXIST"/>: <see cref="MapFlags.FixedNoReplace"/>
    /// over a mapping; <see cref="Errno.EOVERFLOW"/>: offset plus length overflows; <see cref="Errno.ESRCH"/>: exited.
    /// </exception>
    public ulong Mmap(ulong address, ulong length, Protection protection, MapFlags flags, SimFile? file = null, ulong offset = 0)
    {
        MapFlags type = flags & MapFlags.SharedValidate;
        bool shared = (flags & MapFlags.Shared) != 0;
        bool anonymous = (flags & MapFlags.Anonymous) != 0;
        bool fixedAddress = (flags & (MapFlags.Fixed | MapFlags.FixedNoReplace)) != 0;
        if (type == MapFlags.SharedValidate && !anonymous && (flags & ~KnownMapFlags) != 0)
        {
            ThrowHelper.ThrowHmm(Errno.EOPNOTSUPP, $"mmap flags {flags}: MAP_SHARED_VALIDATE with a flag the simulator does not know.");
        }

        if ((flags & ~KnownMapFlags) != 0 || type == MapFlags.None || (type == MapFlags.SharedValidate && anonymous))
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"mmap flags {flags} must hold one mapping type (Shared, Private, or SharedValidate for a file) and nothing unknown.");
        }

        if ((protection & ~(Protection.ReadWrite | Protection.Exec)) != 0 || length == 0)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"mmap of {length} bytes with protection {protection}: length must be positive and protection known.");
        }

        if (anonymous != (file is null))
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, anonymous ? "An anonymous mapping takes no file." : "A file mapping needs a file (or MapFlags.Anonymous).");
        }

        if (file is not null && file.Memory != Memory)
        {
            ThrowForeignFile(file);
        }

        if (!PageSize.IsAligned(offset))
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"File offset 0x{offset:x} is not page aligned.");
        }

        ulong size = RoundUpToPage(length);
        if (size == 0 || size > TaskSize)
        {
            ThrowHelper.ThrowHmm(Errno.ENOMEM, $"{length} bytes do not fit in the address space.");
        }

        if (offset + size < offset)
        {
            ThrowHelper.ThrowHmm(Errno.EOVERFLOW, $"File offset 0x{offset:x} plus {size} bytes overflows.");
        }

        if (fixedAddress)
        {
            ValidateFixed(address, size);
        }

        VmFlags vmFlags = ToVmFlags(protection) | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec
            | (shared ? VmFlags.Shared | VmFlags.MayShare : VmFlags.None);
        using MmapLockGuard guard = MmapWriteLock();
        ulong start = PlaceUnsynchronized(address, size, flags);
        if (anonymous && shared)
        {
            file = new SimFile(Memory, "[shmem]", size) { IsAnonymousShmem = true };
        }

        // Anonymous memory ignores the offset (once it passed the checks above, as in the kernel): private areas
        // take their virtual page number, shared ones start at page 0 of their new shmem file.
        ulong pgoff = !anonymous ? offset >> PageSize.Shift : shared ? 0 : start >> PageSize.Shift;
        var vma = new Vma(this, start, start + size, vmFlags, file, pgoff, anonVma: null);

        // The file gains its mapping before a fixed mapping replaces what was there, which may be the file's last one.
        if (file is not null && !file.TryAddMapping(vma))
        {
            ThrowDeadFile(file);
        }

        InsertNewAreaUnsynchronized(vma, flags);
        Log.Mapped(Logger, Name, start, start + size, vmFlags);
        return start;
    }

    /// <summary>Where a new mapping goes: the fixed address, or a free area (which may throw ENOMEM); EEXIST for a taken fixed-no-replace range. Changes nothing. Caller holds the mmap write lock.</summary>
    private ulong PlaceUnsynchronized(ulong address, ulong size, MapFlags flags)
    {
        if ((flags & MapFlags.FixedNoReplace) != 0 && _vmas.Overlaps(address, address + size))
        {
            ThrowHelper.ThrowHmm(Errno.EEXIST, $"[0x{address:x}, 0x{address + size:x}) is already mapped (MAP_FIXED_NOREPLACE).");
        }

        return (flags & (MapFlags.Fixed | MapFlags.FixedNoReplace)) != 0 ? address : FindFreeArea(address, size);
    }

    /// <summary>The part of mmap that cannot fail: a fixed mapping replaces what was there, a private area gets its anon_vma, and the area joins the tree.</summary>
    private void InsertNewAreaUnsynchronized(Vma vma, MapFlags flags)
    {
        if ((flags & MapFlags.Fixed) != 0)
        {
            UnmapUnsynchronized(vma.Start, vma.End);
        }

        if (!vma.IsShared)
        {
            // Private file mappings need one too: their copied-on-write pages are anonymous.
            vma.AttachNewAnonVma(Memory);
        }

        _vmas.Insert(vma);
    }

    /// <summary>Removes the mappings in a range (<c>munmap</c>), splitting areas that straddle its ends.</summary>
    /// <param name="address">The first address, page aligned.</param>
    /// <param name="length">Bytes, rounded up to whole pages.</param>
    /// <exception cref="HmmException">Error model: invalid arguments or state, with the kernel's errno. <see cref="Errno.EINVAL"/>: unaligned address, length 0, or a range beyond <see cref="TaskSize"/>; <see cref="Errno.ESRCH"/>: exited. Nothing changes.</exception>
    public void Munmap(ulong address, ulong length)
    {
        ulong end = ValidateRange(address, length, Errno.EINVAL, Errno.EINVAL, allowEmpty: false);
        using MmapLockGuard guard = MmapWriteLock();
        UnmapUnsynchronized(address, end);
        Log.Unmapped(Logger, Name, address, end);
    }

    /// <summary>Changes the protection of a range (<c>mprotect</c>), splitting areas as needed. Removing write access write-protects every entry.</summary>
    /// <param name="address">The first address, page aligned.</param>
    /// <param name="length">Bytes, rounded up to whole pages; 0 does nothing.</param>
    /// <param name="protection">The new protection.</param>
    /// <exception cref="HmmException">Error model: invalid arguments or state, with the kernel's errno. <see cref="Errno.EINVAL"/>: unaligned address or unknown protection; <see cref="Errno.ENOMEM"/>: part of the range is not mapped or it extends beyond <see cref="TaskSize"/>; <see cref="Errno.ESRCH"/>: exited. Nothing changes.</exception>
    public void Mprotect(ulong address, ulong length, Protection protection)
    {
        if ((protection & ~(Protection.ReadWrite | Protection.Exec)) != 0)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"Unknown protection {protection}.");
        }

        ulong end = ValidateRange(address, length, Errno.ENOMEM, Errno.ENOMEM, allowEmpty: true);
        using MmapLockGuard guard = MmapWriteLock();
        if (end == address)
        {
            return;
        }

        ThrowUnlessMappedUnsynchronized(address, end);

        var range = new MmuNotifierRange(address, end, MmuNotifierEvent.ProtectionVma);
        InvalidateRangeStart(range);
        try
        {
            VmFlags access = ToVmFlags(protection);
            foreach (Vma vma in IsolateUnsynchronized(address, end))
            {
                vma.Flags = (vma.Flags & ~(VmFlags.Read | VmFlags.Write | VmFlags.Exec)) | access;
                if ((access & VmFlags.Write) == 0)
                {
                    WriteProtectUnsynchronized(vma.Start, vma.End);
                }
                else if (vma.IsShared && !(vma.File?.WantsWriteNotify ?? false))
                {
                    // The area's page protection now includes write and nothing needs to see the first write
                    // (no write-notify), so present entries become writable, as change_protection applies it.
                    MakeWritableUnsynchronized(vma.Start, vma.End);
                }
            }
        }
        finally
        {
            // Even after a KernelBugException: an epoch left open would hang every mirror's ReadBegin silently.
            InvalidateRangeEnd(range);
        }
    }

    /// <summary>Gives advice about a range (<c>madvise</c>): <see cref="Advice.DontNeed"/> or <see cref="Advice.Free"/>.</summary>
    /// <param name="address">The first address, page aligned.</param>
    /// <param name="length">Bytes, rounded up to whole pages; 0 does nothing.</param>
    /// <param name="advice">The advice.</param>
    /// <exception cref="HmmException">
    /// Error model: invalid arguments or state, with the kernel's errno. <see cref="Errno.EINVAL"/>: unaligned address, a length whose rounding or end wraps around, unknown advice, DontNeed on an I/O or PFN-map area, or Free on
    /// memory other than private anonymous; <see cref="Errno.ENOMEM"/>: part of the range is not mapped (the kernel
    /// still advises the mapped part; the simulator changes nothing); <see cref="Errno.ESRCH"/>: exited.
    /// </exception>
    public void Madvise(ulong address, ulong length, Advice advice)
    {
        if (advice is not (Advice.DontNeed or Advice.Free))
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"Unknown advice {(int)advice}.");
        }

        // As the kernel: a length whose rounding or end wraps around is invalid; one past user space is unmapped.
        ulong end = ValidateRange(address, length, Errno.ENOMEM, Errno.EINVAL, allowEmpty: true);
        using MmapLockGuard guard = MmapWriteLock();
        if (end == address)
        {
            return;
        }

        ThrowUnlessMappedUnsynchronized(address, end);

        List<Vma> vmas = _vmas.Overlapping(address, end);
        foreach (Vma vma in vmas)
        {
            if (advice == Advice.DontNeed && (vma.Flags & (VmFlags.Io | VmFlags.PfnMap)) != 0)
            {
                ThrowHelper.ThrowHmm(Errno.EINVAL, $"MADV_DONTNEED on I/O area {vma}.");
            }

            if (advice == Advice.Free && (!vma.IsAnonymous || vma.IsShared))
            {
                ThrowHelper.ThrowHmm(Errno.EINVAL, $"MADV_FREE needs private anonymous memory; {vma} is not.");
            }
        }

        var range = new MmuNotifierRange(address, end, MmuNotifierEvent.Clear);
        InvalidateRangeStart(range);
        try
        {
            foreach (Vma vma in vmas)
            {
                ulong from = Math.Max(address, vma.Start);
                ulong to = Math.Min(end, vma.End);
                if (advice == Advice.DontNeed)
                {
                    ZapRangeUnsynchronized(vma, from, to);
                }
                else
                {
                    MarkLazyFreeUnsynchronized(from, to);
                }
            }

            if (advice == Advice.DontNeed)
            {
                _pageTable.FreeEmptyTables(address, end);
            }
        }
        finally
        {
            InvalidateRangeEnd(range);   // even after a KernelBugException, as in Mprotect
        }
    }

    /// <summary>Unmaps <c>[start, end)</c>: notifies, splits, zaps, detaches, frees empty tables. Caller holds the mmap write lock.</summary>
    internal void UnmapUnsynchronized(ulong start, ulong end)
    {
        if (!_vmas.Overlaps(start, end))
        {
            return;
        }

        var range = new MmuNotifierRange(start, end, MmuNotifierEvent.Unmap);
        InvalidateRangeStart(range);
        try
        {
            foreach (Vma vma in IsolateUnsynchronized(start, end))
            {
                ZapRangeUnsynchronized(vma, vma.Start, vma.End);
                DetachUnsynchronized(vma);
            }

            _pageTable.FreeEmptyTables(start, end);
        }
        finally
        {
            InvalidateRangeEnd(range);   // even after a KernelBugException, as in Mprotect
        }
    }

    /// <summary>
    /// Clears every entry in <c>[start, end)</c> of <paramref name="vma"/> and drops what each held: one mapcount and
    /// one page reference for present, device-private and device-exclusive entries (migration entries hold none).
    /// Pages are put after the PTE lock is released, as the kernel frees them after the TLB flush.
    /// </summary>
    internal void ZapRangeUnsynchronized(Vma vma, ulong start, ulong end)
    {
        Span<ulong> released = stackalloc ulong[PageTable.EntriesPerTable];
        var freed = new RamFreeBatch(Memory, stackalloc ulong[64]);   // the RAM pages freed, to the allocator in one lock each 64
        ulong address = start;
        while (address < end)
        {
            ulong tableEnd = Math.Min(end, (address | (PmdSize - 1)) + 1);
            PteTable? table = _pageTable.Find(address);
            if (table is null)
            {
                address = Math.Min(end, _pageTable.NextTableAddress(address));
                continue;
            }

            int count = 0;
            lock (table.Lock)
            {
                for (; address < tableEnd; address += PageSize.Bytes)
                {
                    int index = PageTable.PteIndex(address);
                    Pte pte = table.Read(index);
                    if (pte.IsNone)
                    {
                        continue;
                    }

                    table.SetUnsynchronized(index, default);
                    if (HoldsPage(pte))
                    {
                        ref PageFrame frame = ref Memory.Frame(pte.Pfn);
                        Interlocked.Decrement(ref frame._mapCount);
                        if (pte.IsDirty && vma.File is not null)
                        {
                            Interlocked.Or(ref frame._flags, (ulong)PageFlags.Dirty);
                        }

                        released[count++] = pte.Pfn.Value;
                    }
                }
            }

            try
            {
                for (int i = 0; i < count; i++)
                {
                    Memory.PutPageBatched(new Pfn(released[i]), ref freed);
                }
            }
            finally
            {
                freed.Flush();
            }
        }
    }

    /// <summary>Removes an area from the tree and from its reverse maps. Caller holds the mmap write lock.</summary>
    internal void DetachUnsynchronized(Vma vma)
    {
        _vmas.Remove(vma);
        vma.UnlinkAnonVmas();
        vma.File?.RemoveMapping(vma);
    }

    /// <summary>Splits areas at <paramref name="start"/> and <paramref name="end"/> and returns those inside. Caller holds the mmap write lock.</summary>
    internal List<Vma> IsolateUnsynchronized(ulong start, ulong end)
    {
        List<Vma> inside = _vmas.Overlapping(start, end);
        for (int i = 0; i < inside.Count; i++)
        {
            Vma vma = inside[i];
            if (vma.Start < start)
            {
                vma = SplitUnsynchronized(vma, start);
                inside[i] = vma;
            }

            if (vma.End > end)
            {
                SplitUnsynchronized(vma, end);
            }
        }

        return inside;
    }

    /// <summary>Splits an area at <paramref name="at"/>; the original keeps the low part; returns the high part.</summary>
    internal Vma SplitUnsynchronized(Vma vma, ulong at)
    {
        Vma high = vma.CloneRange(this, at, vma.End);
        vma.End = at;
        high.File?.AddMapping(high);
        _vmas.Insert(high);
        return high;
    }

    /// <summary>Present entries lose write access; software entries record read-only. Caller holds the mmap lock.</summary>
    internal void WriteProtectUnsynchronized(ulong start, ulong end)
    {
        ForEachEntry(start, end, static (table, index, pte, _) =>
        {
            if (pte.IsWritable)
            {
                table.SetUnsynchronized(index, pte.WriteProtected());
            }
        });
    }

    /// <summary>Present entries gain write access. Caller holds the mmap write lock.</summary>
    private void MakeWritableUnsynchronized(ulong start, ulong end)
    {
        ForEachEntry(start, end, static (table, index, pte, _) =>
        {
            if (pte.IsPresent && !pte.IsWritable)
            {
                table.SetUnsynchronized(index, new Pte(pte.Raw | Pte.WriteBit));
            }
        });
    }

    /// <summary>Whether the entry holds a page reference and a mapcount: not the zero page, and not a special entry (which maps a frame without one).</summary>
    internal static bool HoldsPage(Pte pte) =>
        pte.Kind is PteKind.DevicePrivate or PteKind.DeviceExclusive || (pte.IsPresent && !pte.IsSpecial && pte.Pfn != PhysicalMemory.ZeroPage);

    internal static ulong RoundUpToPage(ulong length) => (length + PageSize.Bytes - 1) & PageSize.Mask;

    private static VmFlags ToVmFlags(Protection protection) => (VmFlags)(ulong)(int)protection & (VmFlags.Read | VmFlags.Write | VmFlags.Exec);

    /// <summary>Visits every non-none entry in the range with its table locked. Caller holds the mmap lock.</summary>
    private void ForEachEntry(ulong start, ulong end, Action<PteTable, int, Pte, Mm> visit)
    {
        ulong address = start;
        while (address < end)
        {
            ulong tableEnd = Math.Min(end, (address | (PmdSize - 1)) + 1);
            PteTable? table = _pageTable.Find(address);
            if (table is null)
            {
                address = Math.Min(end, _pageTable.NextTableAddress(address));
                continue;
            }

            lock (table.Lock)
            {
                for (ulong a = address; a < tableEnd; a += PageSize.Bytes)
                {
                    int index = PageTable.PteIndex(a);
                    Pte pte = table.Read(index);
                    if (!pte.IsNone)
                    {
                        visit(table, index, pte, this);
                    }
                }
            }

            address = tableEnd;
        }
    }

    private void MarkLazyFreeUnsynchronized(ulong start, ulong end)
    {
        ForEachEntry(start, end, static (table, index, pte, mm) =>
        {
            if (!pte.IsPresent || pte.Pfn == PhysicalMemory.ZeroPage)
            {
                return;
            }

            ref PageFrame frame = ref mm.Memory.Frame(pte.Pfn);
            if (frame.MapCount == 1)
            {
                table.SetUnsynchronized(index, new Pte(pte.Raw & ~Pte.DirtyBit));
                Interlocked.And(ref frame._flags, ~(ulong)(PageFlags.Dirty | PageFlags.SwapBacked));
            }
        });
    }

    private void ThrowUnlessMappedUnsynchronized(ulong start, ulong end)
    {
        if (!_vmas.Covers(start, end))
        {
            ThrowHelper.ThrowHmm(Errno.ENOMEM, $"[0x{start:x}, 0x{end:x}) is not entirely mapped.");
        }
    }

    private static void ValidateFixed(ulong address, ulong size)
    {
        if (!PageSize.IsAligned(address))
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"Fixed address 0x{address:x} is not page aligned.");
        }

        if (address > TaskSize - size)
        {
            ThrowHelper.ThrowHmm(Errno.ENOMEM, $"[0x{address:x}, +{size}) extends beyond the user address space (0x{TaskSize:x}).");
        }

        if (address < MinimumAddress)
        {
            ThrowHelper.ThrowHmm(Errno.EPERM, $"Fixed address 0x{address:x} is below the minimum mmap address 0x{MinimumAddress:x}.");
        }
    }

    /// <summary>
    /// Checks alignment and bounds of <c>[address, address + length)</c>; returns its page-rounded end. A length
    /// whose rounding or end wraps around 2^64 fails with <paramref name="wrapped"/>, a range past
    /// <see cref="TaskSize"/> with <paramref name="beyond"/>.
    /// </summary>
    private static ulong ValidateRange(ulong address, ulong length, Errno beyond, Errno wrapped, bool allowEmpty)
    {
        if (!PageSize.IsAligned(address) || (length == 0 && !allowEmpty))
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"Range at 0x{address:x} of {length} bytes: the address must be page aligned and the length positive.");
        }

        ulong size = RoundUpToPage(length);
        if ((length != 0 && size == 0) || address + size < address)
        {
            ThrowHelper.ThrowHmm(wrapped, $"Range at 0x{address:x} of {length} bytes wraps around the end of the address space.");
        }

        if (address > TaskSize || size > TaskSize - address)
        {
            ThrowHelper.ThrowHmm(beyond, $"Range at 0x{address:x} of {length} bytes extends beyond the user address space (0x{TaskSize:x}).");
        }

        return address + size;
    }

    /// <summary>A free area of <paramref name="size"/> bytes: at the hint if free, else the highest gap (top-down, as x86-64 lays out mmap).</summary>
    private ulong FindFreeArea(ulong hint, ulong size)
    {
        hint &= PageSize.Mask;
        if (hint >= MinimumAddress && hint <= TaskSize - size && !_vmas.Overlaps(hint, hint + size))
        {
            return hint;
        }

        ulong ceiling = TaskSize;
        for (int i = _vmas.Count - 1; i >= -1; i--)
        {
            ulong floor = i >= 0 ? _vmas[i].End : MinimumAddress;
            if (ceiling >= floor && ceiling - floor >= size)
            {
                return ceiling - size;
            }

            if (i >= 0)
            {
                ceiling = _vmas[i].Start;
            }
        }

        ThrowHelper.ThrowHmm(Errno.ENOMEM, $"No free area of {size} bytes.");
        return 0;
    }
}
