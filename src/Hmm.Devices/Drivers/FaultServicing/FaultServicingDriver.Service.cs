using Hmm.Devices;
using System.Numerics;

namespace Hmm.Drivers;

// The batch path (uvm_gpu_service_replayable_faults): fetch, sort by address space and address, service one 2 MiB
// block at a time, replay. Everything below runs under _serviceLock, on scratch arrays allocated once.
public sealed partial class FaultServicingDriver
{
    private const int Words = VaBlockTable.Words;
    private const int SlotShift = 52;
    private const ulong PageNumberMask = (1UL << SlotShift) - 1;
    private const VmFlags NotMigratable = VmFlags.Io | VmFlags.DontExpand | VmFlags.PfnMap | VmFlags.MixedMap;

    private readonly DeviceFault[] _faults;
    private readonly ulong[] _keys;
    private readonly int[] _order;
    private readonly ulong[] _faulted = new ulong[Words];
    private readonly ulong[] _write = new ulong[Words];
    private readonly ulong[] _resident = new ulong[Words];
    private readonly ulong[] _migrate = new ulong[Words];
    private readonly ulong[] _moved = new ulong[Words];
    private readonly ulong[] _remote = new ulong[Words];
    private readonly ulong[] _rest = new ulong[Words];
    private readonly ulong[] _unwritable = new ulong[Words];
    private readonly ulong[] _atomic = new ulong[Words];
    private readonly ulong[] _exclusive = new ulong[Words];
    private readonly ulong[] _retry = new ulong[Words];
    private readonly ulong[] _src = new ulong[BlockPages];
    private readonly ulong[] _dst = new ulong[BlockPages];
    private readonly ulong[] _hmm = new ulong[BlockPages];
    private readonly ulong[] _evictSrc = new ulong[BlockPages];
    private readonly ulong[] _evictDst = new ulong[BlockPages];
    private readonly Pfn[] _alloc = new Pfn[BlockPages];
    private readonly Pfn[] _copySrc = new Pfn[BlockPages];
    private readonly Pfn[] _copyDst = new Pfn[BlockPages];
    private readonly int[] _copyIndex = new int[BlockPages];
    private readonly Pfn[] _mapPfns = new Pfn[BlockPages];

    // Per-batch tallies for the FaultBatchResult (service thread only).
    private int _batchMigrated;
    private int _batchInPlace;
    private int _batchEvicted;
    private int _batchUnserviceable;

    // Batches serviced so far: the next FaultBatch trace event's number (service thread only).
    private uint _batchNumber;

    /// <summary>
    /// Services one batch of device faults: fetches up to <see cref="IFaultSource.BatchSize"/> records (duplicates
    /// merged by the fault source), groups them by 2 MiB block, migrates the pages the policy selects into device
    /// memory (evicting least recently used blocks by PFN when it is full), maps every serviced page in the device
    /// page table, charges <see cref="DeviceTiming.FarFaultLatency"/> once, and replays.
    /// </summary>
    /// <returns>What the batch did; <see cref="FaultBatchResult.Count"/> 0 (and no charge) when nothing was pending.</returns>
    /// <exception cref="HmmException">ENODEV: the device was unbound.</exception>
    public FaultBatchResult ServiceNextBatch()
    {
        ThrowIfUnbound();
        lock (_serviceLock)
        {
            ThrowIfUnbound();
            FaultBatchInfo info = _device.Faults.FetchBatch(_faults);
            if (info.Count == 0)
            {
                return default;
            }

            long start = _device.Clock.Now;
            _device.Clock.Advance(_device.Timing.FarFaultLatency);
            _batchMigrated = 0;
            _batchInPlace = 0;
            _batchEvicted = 0;
            _batchUnserviceable = 0;
            int count = info.Count;
            SortFaults(count);
            int blocks = ServiceSorted(count);
            _device.Faults.Replay();
            Statistics.AddBatch(count, info.DuplicatesMerged);
            Statistics.AddUnserviceable(_batchUnserviceable);
            TraceEmitter trace = _memory.Trace;
            if (trace.IsEnabled)
            {
                trace.Emit(TraceEvent.FaultBatch(
                    _device.Device.TraceId, _batchNumber, (ulong)info.Fetched, (ulong)info.DuplicatesMerged, start, _device.Clock.Now));
            }

            _batchNumber++;
            return new FaultBatchResult(count, info.DuplicatesMerged, blocks, _batchMigrated, _batchInPlace, _batchEvicted,
                _batchUnserviceable, _device.Clock.Now - start);
        }
    }

    // Key = address-space slot | page number: sorting groups each space's faults by block, in address order.
    private void SortFaults(int count)
    {
        GpuVaSpace? last = null;
        bool sorted = true;
        for (int i = 0; i < count; i++)
        {
            ref readonly DeviceFault fault = ref _faults[i];
            GpuVaSpace? space = last is not null && ReferenceEquals(last.Space, fault.Space) ? last : SpaceOf(fault.Space);
            last = space;
            _keys[i] = space is null || space.IsDisposed
                ? ulong.MaxValue
                : ((ulong)space.Slot << SlotShift) | (fault.Address >> PageSize.Shift);
            _order[i] = i;
            sorted &= i == 0 || _keys[i - 1] <= _keys[i];
        }

        if (!sorted)
        {
            _keys.AsSpan(0, count).Sort(_order.AsSpan(0, count));   // a streaming batch arrives in order already
        }
    }

    private int ServiceSorted(int count)
    {
        int blocks = 0;
        int next = 0;
        while (next < count)
        {
            if (_keys[next] == ulong.MaxValue)
            {
                _batchUnserviceable += count - next;   // an address space this driver does not (or no longer) serve
                break;
            }

            ulong blockKey = _keys[next] >> VaBlockTable.PageShift;
            Array.Clear(_faulted);
            Array.Clear(_write);
            Array.Clear(_atomic);
            GpuVaSpace space = SpaceOf(_faults[_order[next]].Space)!;
            while (next < count && (_keys[next] >> VaBlockTable.PageShift) == blockKey)
            {
                int page = (int)(_keys[next] & (BlockPages - 1));
                ulong bit = 1UL << (page & 63);
                _faulted[page >> 6] |= bit;
                DeviceAccessKind access = _faults[_order[next]].Access;
                if (access != DeviceAccessKind.Read)
                {
                    _write[page >> 6] |= bit;
                }

                if (access == DeviceAccessKind.Atomic)
                {
                    _atomic[page >> 6] |= bit;
                }

                next++;
            }

            ulong address = ((blockKey << VaBlockTable.PageShift) & PageNumberMask) << PageSize.Shift;
            ServiceBlock(space, address);
            blocks++;
        }

        return blocks;
    }

    private void ServiceBlock(GpuVaSpace space, ulong address)
    {
        int id;
        lock (_lock)
        {
            ulong number = address / VaBlockTable.Bytes;
            if (!space.Blocks.TryGetValue(number, out id))
            {
                id = _blocks.Create(space, address);
                space.Blocks.Add(number, id);
            }

            _blocks.ResidentBits(id).CopyTo(_resident);
            Array.Clear(_migrate);
            _policy.SelectPagesToMigrate(id, address, _faulted, _resident, _migrate);
        }

        for (int w = 0; w < Words; w++)
        {
            _migrate[w] &= ~_resident[w];
            _moved[w] = 0;
        }

        if (!space.Mm.TryGet())
        {
            _batchUnserviceable += PopCount(_faulted);   // the process is exiting
            return;
        }

        try
        {
            if (PopCount(_migrate) > 0)
            {
                MigrateMask(space, id, address, _migrate);
                int remote = FindRemote(space, address);
                if (remote > 0)
                {
                    // Pages in another device's memory: fault them to RAM (that device's migrate_to_ram), then migrate.
                    Statistics.AddRemoteFaults(remote);
                    FaultPages(space, id, address, _remote, map: false);
                    MigrateMask(space, id, address, _remote);
                }
            }

            int rest = 0;
            for (int w = 0; w < Words; w++)
            {
                _rest[w] = _faulted[w] & ~_moved[w];
                rest += BitOperations.PopCount(_rest[w]);
            }

            if (rest > 0)
            {
                MapInPlace(space, id, address);
            }
        }
        finally
        {
            space.Mm.Put();
        }
    }

    // Faulted pages the policy wanted that did not move and sit in another device's private memory.
    private int FindRemote(GpuVaSpace space, ulong address)
    {
        int remote = 0;
        for (int w = 0; w < Words; w++)
        {
            ulong word = _faulted[w] & _migrate[w] & ~_moved[w];
            ulong keep = 0;
            while (word != 0)
            {
                int bit = BitOperations.TrailingZeroCount(word);
                word &= word - 1;
                Pte pte = space.Mm.ReadPte(address + ((ulong)((w << 6) + bit) << PageSize.Shift));
                if (pte.Kind == PteKind.DevicePrivate && !_device.LocalMemory.Contains(pte.Pfn))
                {
                    keep |= 1UL << bit;
                    remote++;
                }
            }

            _remote[w] = keep;
        }

        return remote;
    }

    // Migrates the pages of `mask` (not resident here) with migrate_vma, one run of consecutive pages of one area at
    // a time, into device pages allocated up front (evicting if needed); sets the pages that moved in _moved.
    private void MigrateMask(GpuVaSpace space, int id, ulong address, ulong[] mask)
    {
        int got = AllocateDevicePages(id, PopCount(mask));
        int used = 0;
        if (got > 0)
        {
            ulong sequence = space.NotifierSubscription.ReadBegin();
            using MmapLockGuard mmapLock = space.Mm.MmapReadLock();
            int page = NextSet(mask, 0);
            while (page < BlockPages && used < got)
            {
                int runEnd = NextClear(mask, page);
                ulong pageAddress = address + ((ulong)page << PageSize.Shift);
                Vma? vma = space.Mm.FindVma(pageAddress);
                if (vma is null)
                {
                    page = NextSet(mask, page + 1);   // no area: the in-place pass reports it
                    continue;
                }

                int areaEnd = (int)Math.Min((ulong)runEnd, (vma.End - address) >> PageSize.Shift);
                if ((vma.Flags & NotMigratable) == 0)
                {
                    used = MigrateRun(space, id, vma, address, page, areaEnd, sequence, used, got);
                }

                page = areaEnd < runEnd ? areaEnd : NextSet(mask, runEnd);
            }
        }

        for (int i = used; i < got; i++)
        {
            _memory.UnlockPage(_alloc[i]);   // unused destinations go back to the device's free pool
            _memory.PutPage(_alloc[i]);
        }

        lock (_lock)
        {
            if (_blocks.ResidentCount(id) == 0)
            {
                _policy.BlockEmptied(id);
            }
        }
    }

    private int MigrateRun(GpuVaSpace space, int id, Vma vma, ulong address, int first, int end, ulong sequence, int used, int got)
    {
        int count = end - first;
        ulong start = address + ((ulong)first << PageSize.Shift);
        ulong length = (ulong)count << PageSize.Shift;
        if (ClearRamMapped(id, first, end))
        {
            space.Unmap(start, length);   // the device must not write a RAM page through a stale entry while it moves
        }

        Span<ulong> src = _src.AsSpan(0, count);
        Span<ulong> dst = _dst.AsSpan(0, count);
        var args = new MigrateVma
        {
            Vma = vma,
            Start = start,
            End = start + length,
            Src = src,
            Dst = dst,
            PgmapOwner = Owner,   // our notifier skips this migration: the device table is updated below
            Flags = MigrateVmaSelect.System,
        };
        Migrate.VmaSetup(ref args);
        int copies = 0;
        bool writableArea = (vma.Flags & VmFlags.Write) != 0;
        for (int i = 0; i < count && used < got; i++)
        {
            ulong entry = src[i];
            if (!MigratePfn.IsMigrating(entry))
            {
                continue;
            }

            Pfn device = _alloc[used++];
            _memory.SetZoneDeviceData(device, VaBlockTable.Encode(id, first + i));
            bool hasPage = MigratePfn.TryGetPage(entry, out Pfn ram);
            if (hasPage)
            {
                _copySrc[copies] = ram;
                _copyDst[copies] = device;
                _copyIndex[copies++] = i;
            }
            else if (_memory.StoresPageData)
            {
                _memory.PageData(device).Clear();   // no page yet: the device zero-fills locally, nothing crosses the bus
            }

            bool writable = (entry & MigratePfn.Write) != 0 || (!hasPage && writableArea);
            dst[i] = MigratePfn.FromPfn(device) | (writable ? MigratePfn.Write : 0);
        }

        if (copies > 0)
        {
            Errno copied = _device.CopyEngine.Copy(_copySrc.AsSpan(0, copies), _copyDst.AsSpan(0, copies), out CopyCompletion completion);
            if (copied == Errno.None)
            {
                _device.Clock.AdvanceTo(completion.End);
            }
            else
            {
                // A DMA error: these pages stay in RAM; their destinations go back unused.
                Statistics.AddCopyFailure();
                for (int k = 0; k < copies; k++)
                {
                    dst[_copyIndex[k]] = 0;
                    Pfn device = _copyDst[k];
                    _memory.SetZoneDeviceData(device, 0);
                    _memory.UnlockPage(device);
                    _memory.PutPage(device);
                }
            }
        }

        Migrate.VmaPages(ref args);
        RecordAndMap(space, id, start, first, src, dst, sequence);
        Migrate.VmaFinalize(ref args);
        return used;
    }

    // After VmaPages, MIGRATE marks exactly the pages that moved. Recorded while they are still locked (so no CPU
    // fault can free them first), and mapped unless an invalidation ran since the sequence was read.
    private void RecordAndMap(GpuVaSpace space, int id, ulong start, int first, ReadOnlySpan<ulong> src, ReadOnlySpan<ulong> dst, ulong sequence)
    {
        int migrated = 0;
        lock (space.UpdateLock)
        {
            bool map = !space.NotifierSubscription.ReadRetry(sequence);
            lock (_lock)
            {
                for (int i = 0; i < src.Length; i++)
                {
                    if (MigratePfn.IsMigrating(src[i]) && MigratePfn.TryGetPage(dst[i], out Pfn device))
                    {
                        _blocks.SetResident(id, first + i, device);
                        _moved[(first + i) >> 6] |= 1UL << ((first + i) & 63);
                        migrated++;
                    }
                }
            }

            if (map)
            {
                int i = 0;
                while (i < src.Length)
                {
                    if (!MigratePfn.IsMigrating(src[i]) || !MigratePfn.TryGetPage(dst[i], out _))
                    {
                        i++;
                        continue;
                    }

                    ulong write = dst[i] & MigratePfn.Write;
                    int runStart = i;
                    int n = 0;
                    while (i < src.Length && MigratePfn.IsMigrating(src[i]) && MigratePfn.TryGetPage(dst[i], out Pfn device)
                        && (dst[i] & MigratePfn.Write) == write)
                    {
                        _mapPfns[n++] = device;
                        i++;
                    }

                    DevicePteFlags flags = write != 0 ? DevicePteFlags.Read | DevicePteFlags.Write | DevicePteFlags.Atomic : DevicePteFlags.Read;
                    space.MapLocked(start + ((ulong)runStart << PageSize.Shift), _mapPfns.AsSpan(0, n), flags);
                }
            }
        }

        Statistics.AddPagesToDevice(migrated);
        _batchMigrated += migrated;
    }

    // The faulted pages that did not move: map them where they are, from hmm_range_fault (which also breaks COW for
    // write faults and brings back pages of other devices). A range that fails is retried page by page, so one
    // unmapped or read-only page does not keep the others from being served.
    private void MapInPlace(GpuVaSpace space, int id, ulong address)
    {
        Array.Clear(_unwritable);
        Array.Clear(_exclusive);
        if (FaultPages(space, id, address, _rest, map: true) != Errno.None)
        {
            for (int page = NextSet(_rest, 0); page < BlockPages; page = NextSet(_rest, page + 1))
            {
                if (FaultPagesIn(space, id, address, page, page + 1, _rest, map: true) != Errno.None)
                {
                    _batchUnserviceable++;
                }
            }
        }

        if (PopCount(_unwritable) > 0)
        {
            BreakDeviceCopyOnWrite(space, id, address);
        }

        if (PopCount(_exclusive) > 0)
        {
            MakeExclusive(space, id, address);
        }
    }

    // Atomic faults on pages that stay in System RAM: the device needs exclusive access (make_device_exclusive, as
    // the kernel test driver does), mapped with the atomic permission until the next CPU access revokes it through
    // the notifier. Pages that cannot be made exclusive (shared, file-backed, read-only) are refused.
    private void MakeExclusive(GpuVaSpace space, int id, ulong address)
    {
        Span<ulong> ramMapped = _blocks.RamMapped(id);
        int mapped = 0;
        for (int page = NextSet(_exclusive, 0); page < BlockPages; page = NextSet(_exclusive, page + 1))
        {
            ulong pageAddress = address + ((ulong)page << PageSize.Shift);
            ulong sequence = space.NotifierSubscription.ReadBegin();
            using MmapLockGuard mmapLock = space.Mm.MmapReadLock();
            if (DeviceExclusive.Make(space.Mm, pageAddress, Owner, out Pfn exclusive) != Errno.None)
            {
                _batchUnserviceable++;
                continue;
            }

            lock (space.UpdateLock)
            {
                if (!space.NotifierSubscription.ReadRetry(sequence))
                {
                    _mapPfns[0] = exclusive;
                    space.MapLocked(pageAddress, _mapPfns.AsSpan(0, 1), DevicePteFlags.Read | DevicePteFlags.Write | DevicePteFlags.Atomic);
                    ramMapped[page >> 6] |= 1UL << (page & 63);
                    mapped++;
                }
            }

            _memory.UnlockPage(exclusive);
            _memory.PutPage(exclusive);
        }

        Statistics.AddPagesMappedInPlace(mapped);
        _batchInPlace += mapped;
    }

    // hmm_range_fault reports this device's own pages as they are, without faulting them for a write: a write fault
    // on one whose CPU entry is read-only (copy-on-write after fork) is resolved as a CPU write fault would be
    // (migrate_to_ram, then the copy), and the result mapped; in an area without write permission it is refused.
    private void BreakDeviceCopyOnWrite(GpuVaSpace space, int id, ulong address)
    {
        Array.Clear(_retry);
        using (space.Mm.MmapReadLock())
        {
            for (int page = NextSet(_unwritable, 0); page < BlockPages; page = NextSet(_unwritable, page + 1))
            {
                ulong pageAddress = address + ((ulong)page << PageSize.Shift);
                Vma? vma = space.Mm.FindVma(pageAddress);
                if (vma is not null && (vma.Flags & VmFlags.Write) != 0
                    && space.Mm.HandleMmFault(vma, pageAddress, FaultFlags.Write) == VmFaultResult.None)
                {
                    _retry[page >> 6] |= 1UL << (page & 63);
                }
                else
                {
                    _batchUnserviceable++;
                }
            }
        }

        Array.Clear(_unwritable);
        if (PopCount(_retry) > 0 && FaultPages(space, id, address, _retry, map: true) != Errno.None)
        {
            _batchUnserviceable += PopCount(_retry);
        }

        _batchUnserviceable += PopCount(_unwritable);   // raced again: the replayed access faults anew
    }

    private Errno FaultPages(GpuVaSpace space, int id, ulong address, ulong[] mask, bool map)
    {
        int first = NextSet(mask, 0);
        return first >= BlockPages ? Errno.None : FaultPagesIn(space, id, address, first, LastSet(mask) + 1, mask, map);
    }

    // hmm_range_fault over [first, end) of the block, faulting the pages of `mask` (for writing where they faulted
    // for writing), with the sequence protocol of Documentation/mm/hmm.rst when the result is mapped.
    private Errno FaultPagesIn(GpuVaSpace space, int id, ulong address, int first, int end, ulong[] mask, bool map)
    {
        int count = end - first;
        ulong start = address + ((ulong)first << PageSize.Shift);
        Span<ulong> pfns = _hmm.AsSpan(0, count);
        ulong retries = 0;
        while (true)
        {
            for (int i = 0; i < count; i++)
            {
                int page = first + i;
                pfns[i] = !IsSet(mask, page) ? 0
                    : IsSet(_write, page) ? HmmPfn.RequestFault | HmmPfn.RequestWrite : HmmPfn.RequestFault;
            }

            var range = new HmmRange
            {
                Notifier = space.NotifierSubscription,
                Start = start,
                End = start + ((ulong)count << PageSize.Shift),
                HmmPfns = pfns,
                DefaultFlags = 0,
                PfnFlagsMask = HmmPfn.RequestFault | HmmPfn.RequestWrite,
                DevicePrivateOwner = Owner,   // our own pages are reported, never faulted
            };
            range.NotifierSequence = space.NotifierSubscription.ReadBegin();
            Errno result;
            using (space.Mm.MmapReadLock())
            {
                result = range.Fault();
            }

            if (result == Errno.EBUSY)
            {
                retries++;
                continue;
            }

            TraceEmitter trace = _memory.Trace;
            if (trace.IsEnabled)
            {
                trace.Emit(TraceEvent.RangeFault(_device.Device.TraceId, start, (ulong)count, retries, result, trace.VirtualNow));
            }

            retries = 0;

            if (result != Errno.None || !map)
            {
                return result;
            }

            lock (space.UpdateLock)
            {
                if (space.NotifierSubscription.ReadRetry(range.NotifierSequence))
                {
                    continue;
                }

                MapSnapshotLocked(space, id, start, first, mask, pfns);
                return Errno.None;
            }
        }
    }

    private void MapSnapshotLocked(GpuVaSpace space, int id, ulong start, int first, ulong[] mask, ReadOnlySpan<ulong> pfns)
    {
        Span<ulong> ramMapped = _blocks.RamMapped(id);
        int mapped = 0;
        for (int i = 0; i < pfns.Length; i++)
        {
            int page = first + i;
            ulong entry = pfns[i];
            if (!IsSet(mask, page) || (entry & (HmmPfn.Valid | HmmPfn.Error)) != HmmPfn.Valid)
            {
                continue;
            }

            if ((entry & HmmPfn.Write) == 0 && IsSet(_write, page))
            {
                _unwritable[page >> 6] |= 1UL << (page & 63);   // our own page, reported read-only: see BreakDeviceCopyOnWrite
                continue;
            }

            Pfn pfn = HmmPfn.ToPfn(entry);
            bool local = _device.LocalMemory.Contains(pfn);
            if (!local && IsSet(_atomic, page))
            {
                _exclusive[page >> 6] |= 1UL << (page & 63);   // mapped with atomic access by MakeExclusive
                continue;
            }

            DevicePteFlags flags = (entry & HmmPfn.Write) == 0 ? DevicePteFlags.Read
                : local ? DevicePteFlags.Read | DevicePteFlags.Write | DevicePteFlags.Atomic
                : DevicePteFlags.Read | DevicePteFlags.Write;
            _mapPfns[0] = pfn;
            space.MapLocked(start + ((ulong)i << PageSize.Shift), _mapPfns.AsSpan(0, 1), flags);
            if (!local)
            {
                ramMapped[page >> 6] |= 1UL << (page & 63);
            }

            mapped++;
        }

        Statistics.AddPagesMappedInPlace(mapped);
        _batchInPlace += mapped;
    }

    // Allocates `need` device pages into _alloc for block `id`, evicting victims the policy names while the memory
    // is full. Fewer when the memory stays full or an allocation failure was injected (then nothing is evicted).
    private int AllocateDevicePages(int id, int need)
    {
        int got = 0;
        int attempts = 0;
        while (true)
        {
            int victim = -1;
            lock (_lock)
            {
                got += AllocateLocked(_alloc.AsSpan(got, need - got));
                if (got > 0)
                {
                    _policy.BlockPopulated(id);   // LRU position updated on allocation, as NVIDIA's PMM does
                }

                bool full = _device.LocalMemory.FreePages < need - got;
                if (got < need && full && attempts++ <= _blocks.LiveCount)
                {
                    victim = _policy.SelectVictim(id);
                }
            }

            if (got == need)
            {
                return got;
            }

            if (victim < 0)
            {
                Statistics.AddAllocationShortfall();
                return got;
            }

            EvictBlock(victim);
        }
    }

    // Device allocation under _lock: a page handed out again may still be recorded by its previous block if that
    // block's PageFreed has not run yet; forget it now, and make its late PageFreed a no-op (refcount no longer 0).
    private int AllocateLocked(Span<Pfn> pages)
    {
        int count = _device.LocalMemory.Allocate(pages);
        for (int i = 0; i < count; i++)
        {
            ForgetLocked(pages[i]);   // its zone-device word is rewritten when it gets a block, and ignored until then
        }

        return count;
    }

    /// <summary>
    /// Moves every resident page of a block back to System RAM by PFN (<c>migrate_device_pfns</c>, pages, finalize),
    /// copying through the copy engine; pages without a RAM page or whose copy failed stay. Caller holds _serviceLock.
    /// </summary>
    private int EvictBlock(int id)
    {
        GpuVaSpace? space;
        ulong address;
        int count;
        lock (_lock)
        {
            if (!_blocks.IsLive(id))
            {
                return 0;
            }

            count = _blocks.CollectResident(id, _evictSrc);
            space = _blocks.SpaceOf(id);
            address = _blocks.AddressOf(id);
            if (count == 0)
            {
                _policy.BlockEmptied(id);
                return 0;
            }
        }

        // One unmap and TLB flush for the block; the notifier calls of the migration below then find nothing mapped.
        _blocks.RamMapped(id).Clear();
        space?.BeginQuiet(address, VaBlockTable.Bytes);
        try
        {
            return EvictPfns(id, count);
        }
        finally
        {
            space?.EndQuiet();
        }
    }

    private int EvictPfns(int id, int count)
    {
        Span<ulong> src = _evictSrc.AsSpan(0, count);
        Span<ulong> dst = _evictDst.AsSpan(0, count);
        dst.Clear();
        ulong firstPfn = src[0];
        Migrate.DevicePfns(_memory, src);
        int copies = 0;
        for (int i = 0; i < count; i++)
        {
            if (!MigratePfn.IsMigrating(src[i]) || !MigratePfn.TryGetPage(src[i], out Pfn device) || !_memory.TryAllocatePage(out Pfn ram))
            {
                continue;
            }

            _memory.LockPage(ram);
            _copySrc[copies] = device;
            _copyDst[copies] = ram;
            _copyIndex[copies++] = i;
            dst[i] = MigratePfn.FromPfn(ram) | (src[i] & MigratePfn.Write);
        }

        if (copies > 0)
        {
            Errno copied = _device.CopyEngine.Copy(_copySrc.AsSpan(0, copies), _copyDst.AsSpan(0, copies), out CopyCompletion completion);
            if (copied == Errno.None)
            {
                _device.Clock.AdvanceTo(completion.End);
            }
            else
            {
                Statistics.AddCopyFailure();
                for (int k = 0; k < copies; k++)
                {
                    dst[_copyIndex[k]] = 0;
                    _memory.UnlockPage(_copyDst[k]);
                    _memory.PutPage(_copyDst[k]);
                }
            }
        }

        Migrate.DevicePages(_memory, src, dst);
        int moved = 0;
        for (int i = 0; i < count; i++)
        {
            if (MigratePfn.IsMigrating(src[i]) && dst[i] != 0)
            {
                moved++;
            }
        }

        Migrate.DeviceFinalize(_memory, src, dst);
        Statistics.AddEviction(moved);
        _batchEvicted += moved;
        TraceEmitter trace = _memory.Trace;
        if (trace.IsEnabled)
        {
            trace.Emit(TraceEvent.Evict(_device.Device.TraceId, firstPfn, (ulong)moved, _device.Clock.Now));
        }
        lock (_lock)
        {
            if (_blocks.IsLive(id) && _blocks.ResidentCount(id) > 0)
            {
                _policy.BlockEvictionIncomplete(id);
            }
        }

        return moved;
    }

    private bool ClearRamMapped(int id, int first, int end)
    {
        Span<ulong> bits = _blocks.RamMapped(id);
        bool any = false;
        for (int page = first; page < end; page++)
        {
            ref ulong word = ref bits[page >> 6];
            ulong bit = 1UL << (page & 63);
            if ((word & bit) != 0)
            {
                any = true;
                word &= ~bit;
            }
        }

        return any;
    }

    private static bool IsSet(ulong[] mask, int page) => (mask[page >> 6] & (1UL << (page & 63))) != 0;

    private static int PopCount(ulong[] mask)
    {
        int count = 0;
        foreach (ulong word in mask)
        {
            count += BitOperations.PopCount(word);
        }

        return count;
    }

    // First set page at or after `page`, or BlockPages.
    private static int NextSet(ulong[] mask, int page)
    {
        while (page < BlockPages)
        {
            ulong word = mask[page >> 6] >> (page & 63);
            if (word != 0)
            {
                return page + BitOperations.TrailingZeroCount(word);
            }

            page = (page | 63) + 1;
        }

        return BlockPages;
    }

    // First clear page at or after `page`, or BlockPages.
    private static int NextClear(ulong[] mask, int page)
    {
        while (page < BlockPages)
        {
            ulong word = ~mask[page >> 6] >> (page & 63);
            if (word != 0)
            {
                return Math.Min(BlockPages, page + BitOperations.TrailingZeroCount(word));
            }

            page = (page | 63) + 1;
        }

        return BlockPages;
    }

    private static int LastSet(ulong[] mask)
    {
        for (int w = Words - 1; w >= 0; w--)
        {
            if (mask[w] != 0)
            {
                return (w << 6) + 63 - BitOperations.LeadingZeroCount(mask[w]);
            }
        }

        return -1;
    }
}
