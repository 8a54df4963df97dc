using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// A request to snapshot, and optionally fault in, a range of an address space for a device mirror
/// (<c>struct hmm_range</c> and <c>hmm_range_fault</c>). The caller owns <see cref="HmmPfns"/>, so a populated
/// range is mirrored without allocating.
/// </summary>
/// <remarks>
/// <para>The driver protocol, as in the kernel: <c>seq = notifier.ReadBegin()</c>; take the mmap lock shared;
/// call <see cref="Fault"/>; drop the lock; on <see cref="Errno.EBUSY"/> start again; then take the driver lock
/// that the notifier's invalidate callback takes; if <c>notifier.ReadRetry(seq)</c>, drop it and start again;
/// otherwise program the device page table from <see cref="HmmPfns"/> while still holding the driver lock.</para>
/// <para>When <see cref="Fault"/> returns <see cref="Errno.EBUSY"/>, every entry below the point it reached holds
/// its output and every entry above still holds its input.</para>
/// <para>A <c>ref struct</c> cannot live across an <c>await</c>; an asynchronous driver keeps its range in an
/// <see cref="HmmRangeRequest"/>, which owns its array and documents the same retry loop with awaits.</para>
/// </remarks>
public ref struct HmmRange
{
    /// <summary><c>HMM_RANGE_DEFAULT_TIMEOUT</c>: how long drivers conventionally keep retrying (1000 ms).</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMilliseconds(1000);

    /// <summary>The interval notifier covering the range; its address space is the one walked.</summary>
    public MmuIntervalNotifier Notifier { get; set; }

    /// <summary>The sequence from <see cref="MmuIntervalNotifier.ReadBegin"/> this attempt started with (<c>notifier_seq</c>).</summary>
    public ulong NotifierSequence { get; set; }

    /// <summary>The first address, page aligned.</summary>
    public ulong Start { get; set; }

    /// <summary>One past the last address, page aligned.</summary>
    public ulong End { get; set; }

    /// <summary>One entry per page, input and output; see <see cref="HmmPfn"/>.</summary>
    public Span<ulong> HmmPfns { get; set; }

    /// <summary>Request flags applied to every page (<c>default_flags</c>).</summary>
    public ulong DefaultFlags { get; set; }

    /// <summary>Which bits of each entry's input are per-page request flags (<c>pfn_flags_mask</c>).</summary>
    public ulong PfnFlagsMask { get; set; }

    /// <summary>Device-private pages whose pagemap owner is this object are reported, never faulted (<c>dev_private_owner</c>).</summary>
    public object? DevicePrivateOwner { get; set; }

    /// <summary>
    /// Snapshots the range into <see cref="HmmPfns"/>, faulting pages in where the request flags ask
    /// (<c>hmm_range_fault</c>). The caller holds the address space's mmap lock, shared or exclusive.
    /// </summary>
    /// <returns>
    /// Error model: the kernel's return code is returned. <see cref="Errno.None"/> on success;
    /// <see cref="Errno.EBUSY"/> when the notifier sequence changed (start again from
    /// <see cref="MmuIntervalNotifier.ReadBegin"/>); <see cref="Errno.EFAULT"/> when a fault is requested for a page
    /// that has no area (including any page at or above <see cref="Mm.TaskSize"/>), that lies in an area that
    /// cannot be mirrored (<see cref="VmFlags.Io"/>, <see cref="VmFlags.PfnMap"/>, or no <see cref="VmFlags.Read"/>),
    /// or whose fault failed; <see cref="Errno.EPERM"/> when a write is requested in a read-only area;
    /// <see cref="Errno.ENOMEM"/> when a fault ran out of memory. Pages of such places for which no fault is
    /// requested get <see cref="HmmPfn.Error"/> and the walk goes on, as in the kernel.
    /// </returns>
    /// <exception cref="HmmException">
    /// Error model: invalid argument or state. <see cref="Errno.EINVAL"/>: no notifier, unaligned or empty range,
    /// end below start, or <see cref="HmmPfns"/> shorter than the range; <see cref="Errno.ESRCH"/>: the address space
    /// has exited. Nothing changes.
    /// </exception>
    /// <exception cref="KernelBugException">Error model: broken invariant. The caller does not hold the mmap lock.</exception>
    public readonly Errno Fault()
    {
        Mm mm = Validate();
        Errno result = Run(mm);
        HmmMetrics.RecordRangeFault(result);
        return result;
    }

    /// <summary>Walks and faults until done, an error, or a sequence change (the caller's retry).</summary>
    private readonly Errno Run(Mm mm)
    {
        ulong last = Start;
        while (true)
        {
            if (Notifier.CheckRetry(NotifierSequence))
            {
                return Errno.EBUSY;
            }

            WalkResult walk = Walk(mm, ref last);
            Errno result = walk.Status switch
            {
                WalkStatus.Done => Errno.None,
                WalkStatus.NeedsFault => DoFault(mm, last, walk.FaultEnd, walk.RequiredFault),
                WalkStatus.Again => Errno.EBUSY,
                _ => walk.Error,
            };

            if (result != Errno.EBUSY || walk.Status == WalkStatus.Done)
            {
                return result;
            }
        }
    }

    // Argument checks only: the range may lie anywhere, as the kernel's walk finds no area above user space and
    // treats that as a hole. Messages are built out of line (MirroringThrowHelper) to keep this method small.
    private readonly Mm Validate()
    {
        if (Notifier is null)
        {
            MirroringThrowHelper.ThrowRangeWithoutNotifier();
        }

        if (!PageSize.IsAligned(Start) || !PageSize.IsAligned(End) || End <= Start)
        {
            MirroringThrowHelper.ThrowBadRange(Start, End);
        }

        ulong pages = (End - Start) >> PageSize.Shift;
        if ((ulong)HmmPfns.Length < pages)
        {
            MirroringThrowHelper.ThrowShortPfnArray(HmmPfns.Length, pages);
        }

        Mm mm = Notifier.Mm;
        if (!mm.IsAlive)
        {
            MirroringThrowHelper.ThrowExited(mm);
        }

        mm.AssertMmapLocked();
        return mm;
    }

    /// <summary>Walks from <paramref name="address"/> to the end, filling outputs, until done or a fault is needed.</summary>
    private readonly WalkResult Walk(Mm mm, ref ulong address)
    {
        while (address < End)
        {
            Vma? vma = mm.Vmas.Find(address);
            if (vma is null)
            {
                int next = mm.Vmas.FirstEndingAfter(address);
                ulong holeEnd = next < mm.Vmas.Count ? Math.Min(End, mm.Vmas[next].Start) : End;
                if (RangeNeedFault(address, holeEnd, cpuFlags: 0) != 0)
                {
                    return WalkResult.Fail(Errno.EFAULT);
                }

                Fill(address, holeEnd, HmmPfn.Error);
                address = holeEnd;
                continue;
            }

            ulong vmaEnd = Math.Min(End, vma.End);
            if ((vma.Flags & (VmFlags.Io | VmFlags.PfnMap)) != 0 || (vma.Flags & VmFlags.Read) == 0)
            {
                if (RangeNeedFault(address, vmaEnd, cpuFlags: 0) != 0)
                {
                    return WalkResult.Fail(Errno.EFAULT);
                }

                Fill(address, vmaEnd, HmmPfn.Error);
                address = vmaEnd;
                continue;
            }

            while (address < vmaEnd)
            {
                ulong chunkEnd = Math.Min(vmaEnd, (address | ((1UL << 21) - 1)) + 1);
                WalkResult chunk = WalkPtes(mm, ref address, chunkEnd);
                if (chunk.Status != WalkStatus.Done)
                {
                    return chunk;
                }
            }
        }

        return default;
    }

    /// <summary>One PTE table's worth of the walk (<c>hmm_vma_walk_pmd</c>).</summary>
    private readonly WalkResult WalkPtes(Mm mm, ref ulong address, ulong end)
    {
        PteTable? table = mm.PageTable.Find(address);
        if (table is null)
        {
            uint required = RangeNeedFault(address, end, cpuFlags: 0);
            if (required != 0)
            {
                return WalkResult.Fault(end, required);
            }

            Fill(address, end, 0);
            address = end;
            return default;
        }

        for (; address < end; address += PageSize.Bytes)
        {
            ref ulong entry = ref HmmPfns[(int)((address - Start) >> PageSize.Shift)];
            Pte pte = table.Read(PageTable.PteIndex(address));
            ulong output;
            if (pte.IsPresent)
            {
                ulong cpuFlags = pte.IsWritable ? HmmPfn.Valid | HmmPfn.Write : HmmPfn.Valid;
                uint required = NeedFault(entry, cpuFlags);
                if (required != 0)
                {
                    return WalkResult.Fault(end, required);
                }

                // A special entry (a driver's raw PFN) has no page a device may map: an error, or EFAULT when the
                // caller asked for the page at all, as vm_normal_page() returning no page does in the kernel.
                if (pte.IsSpecial && pte.Pfn != PhysicalMemory.ZeroPage)
                {
                    if (NeedFault(entry, cpuFlags: 0) != 0)
                    {
                        return WalkResult.Fail(Errno.EFAULT);
                    }

                    output = HmmPfn.Error;
                }
                else
                {
                    output = pte.Pfn.Value | cpuFlags;
                }
            }
            else if (pte.Kind == PteKind.DevicePrivate && IsOwnDevicePage(mm.Memory, pte.Pfn))
            {
                output = pte.Pfn.Value | HmmPfn.Valid | (pte.IsWritable ? HmmPfn.Write : 0);
            }
            else
            {
                uint required = NeedFault(entry, cpuFlags: 0);
                if (required != 0)
                {
                    if (pte.Kind == PteKind.Migration)
                    {
                        mm.MigrationEntryWait(pte);
                        return WalkResult.Retry;
                    }

                    return WalkResult.Fault(end, required);
                }

                output = 0;
            }

            entry = (entry & HmmPfn.InOutFlags) | output;
        }

        return default;
    }

    /// <summary>Faults <c>[start, end)</c> with the combined request, then asks for a re-walk (<c>hmm_do_fault</c>).</summary>
    private static Errno DoFault(Mm mm, ulong start, ulong end, uint required)
    {
        Vma? vma = mm.Vmas.Find(start);
        if (vma is null)
        {
            return Errno.EFAULT;
        }

        FaultFlags flags = FaultFlags.Remote;
        if ((required & NeedWriteFault) != 0)
        {
            if ((vma.Flags & VmFlags.Write) == 0)
            {
                return Errno.EPERM;
            }

            flags |= FaultFlags.Write;
        }

        for (ulong address = start; address < end; address += PageSize.Bytes)
        {
            VmFaultResult result = mm.HandleMmFault(vma, address, flags);
            if ((result & VmFaultResult.Oom) != 0)
            {
                return Errno.ENOMEM;
            }

            if (result != VmFaultResult.None)
            {
                return Errno.EFAULT;
            }
        }

        return Errno.EBUSY;
    }

    private const uint NeedFaultBit = 1;
    private const uint NeedWriteFault = 2;

    /// <summary>What fault a page needs given its request and its CPU state (<c>hmm_pte_need_fault</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private readonly uint NeedFault(ulong entry, ulong cpuFlags)
    {
        ulong request = (entry & PfnFlagsMask) | DefaultFlags;
        if ((request & HmmPfn.RequestFault) == 0)
        {
            return 0;
        }

        if ((request & HmmPfn.RequestWrite) != 0 && (cpuFlags & HmmPfn.Write) == 0)
        {
            return NeedFaultBit | NeedWriteFault;
        }

        return (cpuFlags & HmmPfn.Valid) == 0 ? NeedFaultBit : 0;
    }

    private readonly uint RangeNeedFault(ulong start, ulong end, ulong cpuFlags)
    {
        if (((DefaultFlags | PfnFlagsMask) & HmmPfn.RequestFault) == 0)
        {
            return 0;
        }

        uint required = 0;
        for (ulong address = start; address < end; address += PageSize.Bytes)
        {
            required |= NeedFault(HmmPfns[(int)((address - Start) >> PageSize.Shift)], cpuFlags);
            if (required == (NeedFaultBit | NeedWriteFault))
            {
                break;
            }
        }

        return required;
    }

    private readonly void Fill(ulong start, ulong end, ulong flags)
    {
        Span<ulong> entries = HmmPfns.Slice((int)((start - Start) >> PageSize.Shift), (int)((end - start) >> PageSize.Shift));
        foreach (ref ulong entry in entries)
        {
            entry = (entry & HmmPfn.InOutFlags) | flags;
        }
    }

    private readonly bool IsOwnDevicePage(PhysicalMemory memory, Pfn pfn) =>
        DevicePrivateOwner is not null
        && ReferenceEquals(DevPagemap.OfPage(memory, pfn)?.Owner, DevicePrivateOwner);

    private enum WalkStatus
    {
        Done,
        NeedsFault,
        Again,
        Failed,
    }

    private readonly record struct WalkResult(WalkStatus Status, ulong FaultEnd, uint RequiredFault, Errno Error)
    {
        public static WalkResult Retry => new(WalkStatus.Again, 0, 0, Errno.None);

        public static WalkResult Fault(ulong end, uint required) => new(WalkStatus.NeedsFault, end, required, Errno.None);

        public static WalkResult Fail(Errno error) => new(WalkStatus.Failed, 0, 0, error);
    }
}
