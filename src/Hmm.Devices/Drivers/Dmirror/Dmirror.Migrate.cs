using Hmm.Devices;

namespace Hmm.Drivers;

public sealed partial class Dmirror
{
    /// <summary>
    /// Moves <paramref name="command"/>'s range into the device's memory (<c>HMM_DMIRROR_MIGRATE_TO_DEV</c>): System
    /// RAM pages, the zero page and holes of anonymous areas are collected (<c>migrate_vma</c>, select system, at
    /// most 512 pages a round within one area), copied into new device pages through the copy engine, and mapped
    /// in the device page table, writable where the CPU could write. Then the device reads the whole range back
    /// through its page table into <paramref name="buffer"/>.
    /// </summary>
    /// <param name="command">The range. On success <c>CPages</c> = pages read back through the device page table (all of them) and <c>Faults</c> = 0.</param>
    /// <param name="buffer">Receives the data read back, exactly <c>Pages</c> × 4096 bytes.</param>
    /// <returns>
    /// Error model: the kernel's return code. <see cref="Errno.None"/>; EINVAL when a page of the range has no
    /// area, an area that cannot be read, or one migration refuses (I/O, PFN-map, mixed-map), or the process has
    /// exited, before anything moved; ENOENT when, after the migration, some page of the range is not mapped in
    /// the device page table (it could not move: pinned, busy, another device's page, no device memory, or
    /// <see cref="DmirrorFlags.FailAllocation"/>), with the pages that moved left on the device.
    /// </returns>
    /// <exception cref="HmmException">EINVAL: see the type's remarks.</exception>
    public Errno MigrateToDevice(ref DmirrorCommand command, Span<byte> buffer)
    {
        ulong bytes = ValidateRange(in command, (ulong)buffer.Length, PageSize.Bytes);
        ulong start = command.Address;
        ulong end = start + bytes;
        if (!Mm.TryGet())
        {
            return Errno.EINVAL;
        }

        try
        {
            using MmapLockGuard guard = Mm.MmapReadLock();
            if (!CanMigrate(start, end))
            {
                return Errno.EINVAL;
            }

            Span<ulong> src = stackalloc ulong[MigrateChunkPages];
            Span<ulong> dst = stackalloc ulong[MigrateChunkPages];
            for (ulong address = start; address < end;)
            {
                Vma vma = Mm.FindVma(address)!;
                ulong next = ChunkEnd(address, end, vma);
                MigrateChunkToDevice(vma, address, next, src, dst);
                address = next;
            }
        }
        finally
        {
            Mm.Put();
        }

        // Return what the device now reads through its page table, for verification.
        return ReadBack(ref command, start, bytes, buffer);
    }

    /// <summary>
    /// Moves this device's pages in <paramref name="command"/>'s range back to System RAM
    /// (<c>HMM_DMIRROR_MIGRATE_TO_SYS</c>): the device's own device-private pages (device-coherent pages on a
    /// coherent device) are collected, copied into new RAM pages through the copy engine, and dropped from the
    /// device page tables. Another device's pages and RAM pages are left alone. When
    /// <see cref="DmirrorFlags.FailAllocation"/> is set, the first RAM allocation consumes it and fails: that
    /// migration round (up to 512 pages, within one 2 MiB block and one area) stays on the device, mapped as before,
    /// and the later rounds move (the kernel's <c>VM_FAULT_OOM</c>, which this command ignores).
    /// </summary>
    /// <param name="command">The range. On success <c>CPages</c> = pages that moved (not those of a round the flag failed) and <c>Faults</c> = 0.</param>
    /// <returns>
    /// Error model: the kernel's return code. <see cref="Errno.None"/>, also when the flag failed a round; EINVAL as for
    /// <see cref="MigrateToDevice"/>, before anything moved; ENOMEM when no System RAM page was free, EIO when a
    /// copy failed: the rest of the range stays on the device, what moved before stays moved.
    /// </returns>
    /// <exception cref="HmmException">EINVAL: see the type's remarks.</exception>
    public Errno MigrateToSystem(ref DmirrorCommand command)
    {
        ulong bytes = ValidateRange(in command, 0, 0);
        ulong start = command.Address;
        ulong end = start + bytes;
        if (!Mm.TryGet())
        {
            return Errno.EINVAL;
        }

        ulong moved = 0;
        try
        {
            using MmapLockGuard guard = Mm.MmapReadLock();
            if (!CanMigrate(start, end))
            {
                return Errno.EINVAL;
            }

            Span<ulong> src = stackalloc ulong[MigrateChunkPages];
            Span<ulong> dst = stackalloc ulong[MigrateChunkPages];
            for (ulong address = start; address < end;)
            {
                Vma vma = Mm.FindVma(address)!;
                ulong next = ChunkEnd(address, end, vma);
                Errno error = MigrateChunkToSystem(vma, address, next, src, dst, ref moved);
                if (error != Errno.None)
                {
                    return error;
                }

                address = next;
            }
        }
        finally
        {
            Mm.Put();
        }

        command.CPages = moved;
        command.Faults = 0;
        return Errno.None;
    }

    // The whole range must lie in areas that can be read and migrated (vma_lookup and VM_READ per round in the
    // kernel, and migrate_vma_setup's own refusal); checked first so that an error changes nothing.
    // Caller holds the mmap lock.
    private bool CanMigrate(ulong start, ulong end)
    {
        for (ulong address = start; address < end;)
        {
            Vma? vma = Mm.FindVma(address);
            if (vma is null || (vma.Flags & VmFlags.Read) == 0 || (vma.Flags & UnmigratableFlags) != 0)
            {
                return false;
            }

            address = Math.Min(vma.End, end);
        }

        return true;
    }

    // One migrate_vma round: up to the next 2 MiB boundary (pmd_addr_end), within the area.
    private static ulong ChunkEnd(ulong address, ulong end, Vma vma)
    {
        const ulong chunkBytes = (ulong)MigrateChunkPages << PageSize.Shift;
        ulong boundary = (address + chunkBytes) & ~(chunkBytes - 1);
        return Math.Min(Math.Min(boundary, end), vma.End);
    }

    private void MigrateChunkToDevice(Vma vma, ulong start, ulong end, Span<ulong> srcBuffer, Span<ulong> dstBuffer)
    {
        int count = (int)((end - start) >> PageSize.Shift);
        Span<ulong> src = srcBuffer[..count];
        Span<ulong> dst = dstBuffer[..count];
        var args = new MigrateVma
        {
            Vma = vma,
            Start = start,
            End = end,
            Src = src,
            Dst = dst,
            PgmapOwner = _device.Owner,     // this driver's mirrors skip the invalidation: see Invalidate
            Flags = MigrateVmaSelect.System,
        };
        Migrate.VmaSetup(ref args);
        try
        {
            AllocateAndCopyToDevice(vma, src, dst);
        }
        finally
        {
            // After a successful setup, always both steps: finalize restores whatever did not move.
            Migrate.VmaPages(ref args);
            MapMigrated(start, src, dst);
            Migrate.VmaFinalize(ref args);
        }
    }

    // dmirror_migrate_alloc_and_copy: a device page for every collected System RAM page or hole, filled by the
    // copy engine (from the zero page for a hole), in one batch.
    private void AllocateAndCopyToDevice(Vma vma, ReadOnlySpan<ulong> src, Span<ulong> dst)
    {
        PhysicalMemory memory = _backend.Memory;
        int needed = 0;
        for (int i = 0; i < src.Length; i++)
        {
            if (NeedsDevicePage(memory, src[i]))
            {
                needed++;
            }
        }

        if (needed == 0)
        {
            return;
        }

        // The one-shot failure makes the first allocation of the round fail; that page is simply not migrated.
        int skip = TakeFailAllocation() ? 1 : 0;
        Span<Pfn> pages = stackalloc Pfn[MigrateChunkPages];
        Span<Pfn> from = stackalloc Pfn[MigrateChunkPages];
        int allocated = _device.Allocate(pages[..(needed - skip)], this);
        int used = 0;
        for (int i = 0; i < src.Length && used < allocated; i++)
        {
            if (!NeedsDevicePage(memory, src[i]))
            {
                continue;
            }

            if (skip > 0)
            {
                skip--;
                continue;
            }

            bool hasPage = MigratePfn.TryGetPage(src[i], out Pfn source);
            bool writable = (src[i] & MigratePfn.Write) != 0 || (!hasPage && (vma.Flags & VmFlags.Write) != 0);
            from[used] = hasPage ? source : PhysicalMemory.ZeroPage;
            dst[i] = MigratePfn.FromPfn(pages[used]) | (writable ? MigratePfn.Write : 0);
            used++;
        }

        if (_device.Copy(from[..used], pages[..used]) != Errno.None)
        {
            // A failed DMA: no page moves this round.
            for (int k = 0; k < used; k++)
            {
                _device.ReleaseUnused(pages[k]);
            }

            dst.Clear();
        }
    }

    // A collected entry the driver migrates: a System RAM page, the zero page, or a hole. A device page cannot be
    // collected with select-system; the kernel warns and skips one.
    private static bool NeedsDevicePage(PhysicalMemory memory, ulong entry) =>
        MigratePfn.IsMigrating(entry) && (!MigratePfn.TryGetPage(entry, out Pfn page) || !memory.Page(page).IsZoneDevice);

    // dmirror_migrate_finalize_and_map: map every page that moved, while it is still locked. The other mirrors of
    // this device on the process drop their entries for those pages (they pointed at the old pages).
    private void MapMigrated(ulong start, ReadOnlySpan<ulong> src, ReadOnlySpan<ulong> dst)
    {
        _device.EraseInMirrors(Mm, this, start, src, dst);
        Span<Pfn> page = stackalloc Pfn[1];
        lock (_lock)
        {
            for (int i = 0; i < src.Length; i++)
            {
                if (MigratePfn.IsMigrating(src[i]) && MigratePfn.TryGetPage(dst[i], out page[0]))
                {
                    DevicePteFlags flags = (dst[i] & MigratePfn.Write) != 0 ? DevicePteFlags.Read | DevicePteFlags.Write : DevicePteFlags.Read;
                    MapLocked(start + ((ulong)i << PageSize.Shift), page, flags);
                }
            }
        }
    }

    private Errno MigrateChunkToSystem(Vma vma, ulong start, ulong end, Span<ulong> srcBuffer, Span<ulong> dstBuffer, ref ulong moved)
    {
        int count = (int)((end - start) >> PageSize.Shift);
        Span<ulong> src = srcBuffer[..count];
        Span<ulong> dst = dstBuffer[..count];
        var args = new MigrateVma
        {
            Vma = vma,
            Start = start,
            End = end,
            Src = src,
            Dst = dst,
            PgmapOwner = _device.Owner,
            Flags = _device.SelectOwnPages,
        };
        Migrate.VmaSetup(ref args);
        Errno error;
        try
        {
            error = AllocateAndCopyToSystem(start, src, dst);
        }
        finally
        {
            Migrate.VmaPages(ref args);
            for (int i = 0; i < count; i++)
            {
                if ((src[i] & MigratePfn.Valid) != 0 && MigratePfn.IsMigrating(src[i]))
                {
                    moved++;
                }
            }

            Migrate.VmaFinalize(ref args);
        }

        return error;
    }

    // dmirror_devmem_fault_alloc_and_copy: a locked RAM page for every collected device page, the device page
    // tables' entries dropped, one copy batch device -> RAM. Stops at the first RAM page it cannot get: ENOMEM for a
    // real shortage; the one-shot FailAllocation is the kernel's VM_FAULT_OOM, which MIGRATE_TO_SYS ignores, so the
    // pages from there on simply get no destination and finalize leaves them on the device.
    private Errno AllocateAndCopyToSystem(ulong start, ReadOnlySpan<ulong> src, Span<ulong> dst)
    {
        PhysicalMemory memory = _backend.Memory;
        Span<Pfn> from = stackalloc Pfn[MigrateChunkPages];
        Span<Pfn> to = stackalloc Pfn[MigrateChunkPages];
        int copies = 0;
        Errno result = Errno.None;
        for (int i = 0; i < src.Length; i++)
        {
            if (!MigratePfn.IsMigrating(src[i]) || !MigratePfn.TryGetPage(src[i], out Pfn devicePage))
            {
                continue;
            }

            if (TakeFailAllocation())
            {
                break;
            }

            if (!memory.TryAllocatePage(out Pfn ram))
            {
                result = Errno.ENOMEM;
                break;
            }

            memory.LockPage(ram);
            from[copies] = devicePage;
            to[copies] = ram;
            copies++;
            dst[i] = MigratePfn.FromPfn(ram) | (src[i] & MigratePfn.Write);
        }

        _device.EraseInMirrors(Mm, null, start, src, dst);
        if (_device.Copy(from[..copies], to[..copies]) != Errno.None)
        {
            for (int k = 0; k < copies; k++)
            {
                _device.ReleaseUnused(to[k]);
            }

            dst.Clear();
            return Errno.EIO;
        }

        return result;
    }

    // The end of MIGRATE_TO_DEV and EXCLUSIVE: the device reads the whole range back through its page table into the
    // caller's buffer; every page must be mapped (ENOENT otherwise, with the command and buffer left as they were).
    private Errno ReadBack(ref DmirrorCommand command, ulong start, ulong bytes, Span<byte> buffer)
    {
        byte[]? bounce = RentBounce(bytes);
        try
        {
            DeviceAccessResult access;
            lock (_lock)
            {
                Span<byte> data = bounce is null ? default : bounce.AsSpan(0, (int)bytes);
                access = _backend.Access(_space, start, bytes, DeviceAccessKind.Read, data, engine: 0, replayable: false);
            }

            if (!access.Completed)
            {
                return Errno.ENOENT;
            }

            bounce?.AsSpan(0, (int)bytes).CopyTo(buffer);
        }
        finally
        {
            ReturnBounce(bounce);
        }

        command.CPages = bytes >> PageSize.Shift;
        command.Faults = 0;
        return Errno.None;
    }
}
