using System.Buffers;
using Hmm.Devices;

namespace Hmm.Drivers;

public sealed partial class Dmirror
{
    private const int PmdOrder = 9;     // 2 MiB / 4 KiB
    private const int PudOrder = 18;    // 1 GiB / 4 KiB

    /// <summary>
    /// Reports what the CPU page tables hold for each page of <paramref name="command"/>'s range, without faulting
    /// anything in (<c>HMM_DMIRROR_SNAPSHOT</c>): <c>hmm_range_fault</c> with no request flags, 32 pages a round,
    /// each round under a temporary interval notifier of its own, one <see cref="DmirrorSnapshot"/> byte per page.
    /// </summary>
    /// <param name="command">The range. On success <c>CPages</c> = <c>Pages</c> and <c>Faults</c> = 0.</param>
    /// <param name="states">Receives one <see cref="DmirrorSnapshot"/> byte per page, exactly <c>Pages</c> bytes.</param>
    /// <returns>
    /// Error model: the kernel's return code. <see cref="Errno.None"/>; EBUSY when a round kept being invalidated
    /// for <see cref="HmmRange.DefaultTimeout"/>; EINVAL when the process has exited. Nothing changes in memory.
    /// </returns>
    /// <exception cref="HmmException">EINVAL: see the type's remarks.</exception>
    public Errno Snapshot(ref DmirrorCommand command, Span<byte> states)
    {
        ulong bytes = ValidateRange(in command, (ulong)states.Length, 1);
        ulong start = command.Address;
        ulong end = start + bytes;
        int pages = (int)(bytes >> PageSize.Shift);
        if (!Mm.TryGet())
        {
            return Errno.EINVAL;
        }

        byte[] result = ArrayPool<byte>.Shared.Rent(pages);
        try
        {
            Span<ulong> pfns = stackalloc ulong[FaultChunkPages];
            for (ulong address = start; address < end;)
            {
                ulong next = Math.Min(address + ((ulong)FaultChunkPages << PageSize.Shift), end);
                int offset = (int)((address - start) >> PageSize.Shift);
                Errno error = RangeSnapshot(address, next, pfns, result.AsSpan(offset, (int)((next - address) >> PageSize.Shift)));
                if (error != Errno.None)
                {
                    return error;
                }

                address = next;
            }

            result.AsSpan(0, pages).CopyTo(states);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(result);
            Mm.Put();
        }

        command.CPages = (ulong)pages;
        command.Faults = 0;
        return Errno.None;
    }

    /// <summary>
    /// Gives the device exclusive (atomic) access to each page of <paramref name="command"/>'s range
    /// (<c>HMM_DMIRROR_EXCLUSIVE</c>, <see cref="DeviceExclusive.Make"/>): the CPU mapping becomes a device-exclusive
    /// entry and the device maps the page with <see cref="DevicePteFlags.Atomic"/> (readable; a device write still
    /// faults first, as the kernel's atomic tag is not its write tag). Then the device reads the range back.
    /// </summary>
    /// <param name="command">The range. On success <c>CPages</c> = pages read back and <c>Faults</c> = 0.</param>
    /// <param name="buffer">Receives the data read back, exactly <c>Pages</c> × 4096 bytes.</param>
    /// <returns>
    /// Error model: the kernel's return code. <see cref="Errno.None"/>; EFAULT when a page of the range has no
    /// writable area (checked before anything changes) or its write fault failed; ENOMEM; EOPNOTSUPP for a page
    /// that is not anonymous; EINVAL when the process has exited; ENOENT when a page lost its device entry before
    /// the read-back (a concurrent CPU access). After ENOMEM or EOPNOTSUPP the pages before stay exclusive.
    /// </returns>
    /// <exception cref="HmmException">EINVAL: see the type's remarks.</exception>
    public Errno Exclusive(ref DmirrorCommand command, Span<byte> buffer)
    {
        ulong bytes = ValidateRange(in command, (ulong)buffer.Length, PageSize.Bytes);
        ulong start = command.Address;
        ulong end = start + bytes;
        if (!Mm.TryGet())
        {
            return Errno.EINVAL;
        }

        PhysicalMemory memory = _backend.Memory;
        try
        {
            using MmapLockGuard guard = Mm.MmapReadLock();
            if (!CanMakeExclusive(start, end))
            {
                return Errno.EFAULT;
            }

            Span<Pfn> page = stackalloc Pfn[1];
            for (ulong address = start; address < end; address += PageSize.Bytes)
            {
                Errno error = DeviceExclusive.Make(Mm, address, owner: null, out page[0]);
                if (error != Errno.None)
                {
                    return error;
                }

                lock (_lock)
                {
                    MapLocked(address, page, DevicePteFlags.Read | DevicePteFlags.Atomic);
                }

                memory.UnlockPage(page[0]);
                memory.PutPage(page[0]);
            }
        }
        finally
        {
            Mm.Put();
        }

        return ReadBack(ref command, start, bytes, buffer);
    }

    // make_device_exclusive refuses a page without a writable area with EFAULT; checked for the whole range first.
    // Caller holds the mmap lock.
    private bool CanMakeExclusive(ulong start, ulong end)
    {
        for (ulong address = start; address < end;)
        {
            Vma? vma = Mm.FindVma(address);
            if (vma is null || (vma.Flags & VmFlags.Write) == 0 || (vma.Flags & (VmFlags.Io | VmFlags.PfnMap)) != 0)
            {
                return false;
            }

            address = Math.Min(vma.End, end);
        }

        return true;
    }

    // dmirror_range_snapshot: one round under a temporary notifier whose callback only bumps the sequence.
    private Errno RangeSnapshot(ulong start, ulong end, Span<ulong> pfns, Span<byte> states)
    {
        MmuIntervalNotifier notifier = MmuIntervalNotifier.Insert(Mm, start, end - start, _snapshotOps);
        try
        {
            var range = new HmmRange
            {
                Notifier = notifier,
                Start = start,
                End = end,
                HmmPfns = pfns,
                DefaultFlags = 0,
                PfnFlagsMask = 0,
                DevicePrivateOwner = _device.Owner,
            };
            long deadline = Environment.TickCount64 + (long)HmmRange.DefaultTimeout.TotalMilliseconds;
            ulong retries = 0;
            while (true)
            {
                if (Environment.TickCount64 > deadline)
                {
                    TraceRangeFault(start, end, retries, Errno.EBUSY);
                    return Errno.EBUSY;
                }

                range.NotifierSequence = notifier.ReadBegin();
                Errno error;
                using (Mm.MmapReadLock())
                {
                    error = range.Fault();
                }

                if (error == Errno.EBUSY)
                {
                    retries++;
                    continue;
                }

                TraceRangeFault(start, end, retries, error);
                retries = 0;

                if (error != Errno.None)
                {
                    return error;
                }

                lock (_lock)
                {
                    if (notifier.ReadRetry(range.NotifierSequence))
                    {
                        continue;
                    }

                    for (int i = 0; i < states.Length; i++)
                    {
                        states[i] = (byte)State(pfns[i]);
                    }

                    return Errno.None;
                }
            }
        }
        finally
        {
            notifier.Remove();
        }
    }

    // dmirror_mkentry: one HMM PFN entry as a snapshot byte.
    private DmirrorSnapshot State(ulong entry)
    {
        if ((entry & HmmPfn.Error) != 0)
        {
            return DmirrorSnapshot.Error;
        }

        if ((entry & HmmPfn.Valid) == 0)
        {
            return DmirrorSnapshot.None;
        }

        Pfn page = HmmPfn.ToPfn(entry);
        DevPagemap? pagemap = DevPagemap.OfPage(_backend.Memory, page);
        bool local = pagemap is not null && ReferenceEquals(pagemap.Owner, _device.Owner);
        DmirrorSnapshot state = pagemap?.Type switch
        {
            MemoryType.DevicePrivate => local ? DmirrorSnapshot.DevicePrivateLocal : DmirrorSnapshot.DevicePrivateRemote,
            MemoryType.DeviceCoherent => local ? DmirrorSnapshot.DeviceCoherentLocal : DmirrorSnapshot.DeviceCoherentRemote,
            _ => page == PhysicalMemory.ZeroPage ? DmirrorSnapshot.Zero : DmirrorSnapshot.None,
        };
        state |= (entry & HmmPfn.Write) != 0 ? DmirrorSnapshot.Write : DmirrorSnapshot.Read;
        int order = HmmPfn.MapOrder(entry);
        if (order == PmdOrder)
        {
            state |= DmirrorSnapshot.Pmd;
        }
        else if (order == PudOrder)
        {
            state |= DmirrorSnapshot.Pud;
        }

        return state;
    }

    /// <summary>The snapshot rounds' temporary notifier callback: any invalidation of the round only restarts it.</summary>
    private sealed class SnapshotOps(Dmirror mirror) : IMmuIntervalNotifierOps
    {
        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            if (range.Blockable)
            {
                mirror._lock.Enter();
            }
            else if (!mirror._lock.TryEnter())
            {
                return false;
            }

            subscription.SetSequence(currentSequence);
            mirror._lock.Exit();
            return true;
        }
    }
}
