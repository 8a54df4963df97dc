using System.Buffers;
using Hmm.Devices;

namespace Hmm.Drivers;

/// <summary>
/// One open mirror file of a <see cref="DmirrorDevice"/> (<c>struct dmirror</c> of the kernel's
/// <c>lib/test_hmm.c</c>): a device address space that mirrors one process, one interval notifier over the whole
/// address space that keeps it coherent, and the driver's commands (the ioctls) with the kernel's results and
/// counters. Dispose it to close the file.
/// </summary>
/// <remarks>
/// <para>The device page table maps device virtual address = CPU virtual address. Unlike the kernel's test driver,
/// whose device pages are placeholders backed by separate System RAM pages, a migrated page's entry points at the
/// device page itself, which holds the data; device reads and writes go through
/// <see cref="IDeviceBackend.Access"/> and are charged by the device.</para>
/// <para>Error model: invalid arguments (a misaligned address, zero pages, a range that wraps, a buffer of the
/// wrong length, unknown flags, use after dispose) throw <see cref="HmmException"/> EINVAL before anything
/// changes. Results that depend on memory state are returned as the kernel's ioctl returns them; the command
/// structure and the buffer are then left as they were. As in the kernel, a returned error does not undo what
/// the command did to memory before it failed (pages faulted in or migrated); every command except
/// <see cref="Exclusive"/> checks the areas of its whole range before it changes anything.</para>
/// <para>Concurrency model: thread-safe; commands may run on several threads at once, concurrently with CPU
/// accesses, munmap, mprotect and fork of the process. A lock (the kernel's <c>dmirror-&gt;mutex</c>) orders the
/// device page table's updates against the invalidation callback.</para>
/// </remarks>
public sealed partial class Dmirror : IDisposable
{
    // Pages per hmm_range_fault round of a device fault, and per snapshot round (the kernel's pfns[] arrays).
    internal const int FaultChunkPages = 32;

    // Pages per migrate_vma round: at most one page table's worth, never across a 2 MiB boundary.
    internal const int MigrateChunkPages = 512;

    private const VmFlags UnmigratableFlags = VmFlags.Io | VmFlags.DontExpand | VmFlags.PfnMap | VmFlags.MixedMap;

    private readonly DmirrorDevice _device;
    private readonly IDeviceBackend _backend;
    private readonly IDeviceAddressSpace _space;
    private readonly MmuIntervalNotifier _notifier;
    private readonly SnapshotOps _snapshotOps;
    private readonly Lock _lock = new();

    // The span of device virtual addresses that may hold entries ([_mappedLow, _mappedHigh)), so that an
    // invalidation of a huge range (exit, a large munmap) touches only the part that was ever mapped. Under _lock.
    private ulong _mappedLow = ulong.MaxValue;
    private ulong _mappedHigh;
    private int _flags;
    private int _disposed;

    internal Dmirror(DmirrorDevice device, Mm mm)
    {
        _device = device;
        _backend = device.Backend;
        Mm = mm;
        _space = _backend.CreateAddressSpace($"dmirror:{mm.Name}");
        _snapshotOps = new SnapshotOps(this);
        _notifier = MmuIntervalNotifier.Insert(mm, 0, PageSize.Mask, new MirrorOps(this));
    }

    /// <summary>The device this mirror belongs to.</summary>
    public DmirrorDevice Device => _device;

    /// <summary>The mirrored process.</summary>
    public Mm Mm { get; }

    /// <summary>The mirror's device page table (the kernel's <c>dmirror-&gt;pt</c>).</summary>
    public IDeviceAddressSpace AddressSpace => _space;

    /// <summary>The flags set by <see cref="SetFlags"/> that are still pending.</summary>
    public DmirrorFlags Flags => (DmirrorFlags)Volatile.Read(ref _flags);

    /// <summary>
    /// The device reads <paramref name="command"/>'s range through its page table (<c>HMM_DMIRROR_READ</c>). At the
    /// first page without an entry it faults the rest of the range in (<c>hmm_range_fault</c>, 32 pages a round,
    /// retried for up to <see cref="HmmRange.DefaultTimeout"/>) and reads on from there.
    /// </summary>
    /// <param name="command">The range. On success <c>CPages</c> = pages read and <c>Faults</c> = successful fault rounds.</param>
    /// <param name="buffer">Receives the data, exactly <c>Pages</c> × 4096 bytes (untouched on a metadata-only machine).</param>
    /// <returns>
    /// Error model: the kernel's return code. <see cref="Errno.None"/>; otherwise the fault's error: EFAULT (no
    /// area, or an area that cannot be read or mirrored), EPERM, ENOMEM, EBUSY (the range kept being invalidated),
    /// or EINVAL (the process has exited).
    /// </returns>
    /// <exception cref="HmmException">EINVAL: see the type's remarks.</exception>
    public Errno Read(ref DmirrorCommand command, Span<byte> buffer) =>
        ReadInto(ref command, buffer);

    /// <summary>
    /// The device writes <paramref name="buffer"/> to <paramref name="command"/>'s range through its page table
    /// (<c>HMM_DMIRROR_WRITE</c>). A page counts as missing unless its entry is writable (an atomic entry is not),
    /// which starts a write fault of the rest of the range.
    /// </summary>
    /// <param name="command">The range. On success <c>CPages</c> = pages written and <c>Faults</c> = successful fault rounds.</param>
    /// <param name="buffer">The data, exactly <c>Pages</c> × 4096 bytes.</param>
    /// <returns>Error model: the kernel's return code, as for <see cref="Read"/>; EPERM for a read-only area.</returns>
    /// <exception cref="HmmException">EINVAL: see the type's remarks.</exception>
    public Errno Write(ref DmirrorCommand command, ReadOnlySpan<byte> buffer)
    {
        ulong bytes = ValidateRange(in command, (ulong)buffer.Length, PageSize.Bytes);
        byte[]? bounce = RentBounce(bytes);
        try
        {
            if (bounce is not null)
            {
                buffer.CopyTo(bounce);
            }

            return AccessRange(ref command, bounce, bytes, write: true);
        }
        finally
        {
            ReturnBounce(bounce);
        }
    }

    /// <summary>
    /// Sets test flags (<c>HMM_DMIRROR_FLAGS</c>); they replace the pending ones.
    /// </summary>
    /// <param name="flags">The flags.</param>
    /// <returns>Error model: the kernel's return code, always <see cref="Errno.None"/>.</returns>
    /// <exception cref="HmmException">EINVAL: an unknown flag, or the mirror is closed.</exception>
    public Errno SetFlags(DmirrorFlags flags)
    {
        ThrowIfDisposed();
        if ((flags & ~DmirrorFlags.FailAllocation) != 0)
        {
            throw new HmmException(Errno.EINVAL, $"Unknown dmirror flags 0x{(int)flags:x}.");
        }

        Volatile.Write(ref _flags, (int)flags);
        return Errno.None;
    }

    /// <summary>
    /// Checks that the device holds no atomic (exclusive) entry in <paramref name="command"/>'s range any more
    /// (<c>HMM_DMIRROR_CHECK_EXCLUSIVE</c>): a CPU access to an exclusive page revokes the device's entry.
    /// </summary>
    /// <param name="command">The range. On success <c>CPages</c> and <c>Faults</c> are 0.</param>
    /// <returns>Error model: the kernel's return code. <see cref="Errno.None"/>, or EPERM when an atomic entry remains.</returns>
    /// <exception cref="HmmException">EINVAL: see the type's remarks.</exception>
    public Errno CheckExclusive(ref DmirrorCommand command)
    {
        ulong bytes = ValidateRange(in command, 0, 0);
        ulong start = command.Address;
        lock (_lock)
        {
            ulong from = Math.Max(start, _mappedLow);
            ulong to = Math.Min(start + bytes, _mappedHigh);
            for (ulong address = from; address < to; address += PageSize.Bytes)
            {
                if (_space.TryLookup(address, out DevicePte entry) && (entry.Flags & DevicePteFlags.Atomic) != 0)
                {
                    return Errno.EPERM;
                }
            }
        }

        command.CPages = 0;
        command.Faults = 0;
        return Errno.None;
    }

    /// <summary>
    /// Moves every page of the device back to System RAM, in every process and every mirror
    /// (<c>HMM_DMIRROR_RELEASE</c>): an eviction by PFN, as before the device memory is removed. The device keeps
    /// its memory; later migrations allocate from it again.
    /// </summary>
    /// <param name="command">A valid range (the kernel checks it, then ignores it). On success <c>CPages</c> and <c>Faults</c> are 0.</param>
    /// <returns>Error model: the kernel's return code, always <see cref="Errno.None"/>. Pages pinned or held by a concurrent migration stay.</returns>
    /// <exception cref="HmmException">EINVAL: see the type's remarks.</exception>
    public Errno Release(ref DmirrorCommand command)
    {
        ValidateRange(in command, 0, 0);
        _device.EvictAll();
        command.CPages = 0;
        command.Faults = 0;
        return Errno.None;
    }

    /// <summary>
    /// Closes the file (<c>release</c> of the device file): removes the interval notifier, moves every page of the
    /// device back to System RAM (also pages other mirrors migrated, as the kernel does), and empties the device
    /// page table. A second call does nothing.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _notifier.Remove();
        _device.Unregister(this);
        _device.EvictAll();
        lock (_lock)
        {
            EraseLocked(0, Mm.TaskSize);
        }
    }

    /// <summary>Drops the entry of one page (the CPU fault path's own migration skipped the invalidation callback).</summary>
    internal void ErasePage(ulong address)
    {
        lock (_lock)
        {
            EraseLocked(address, address + PageSize.Bytes);
        }
    }

    /// <summary>
    /// Drops the entries of the pages of <c>[start, ...)</c> whose <paramref name="src"/> entry migrates and, when
    /// <paramref name="dst"/> is not empty, has a destination page.
    /// </summary>
    internal void EraseMigrating(ulong start, ReadOnlySpan<ulong> src, ReadOnlySpan<ulong> dst)
    {
        lock (_lock)
        {
            bool any = false;
            for (int i = 0; i < src.Length; i++)
            {
                if (MigratePfn.IsMigrating(src[i]) && (dst.IsEmpty || MigratePfn.TryGetPage(dst[i], out _)))
                {
                    ulong address = start + ((ulong)i << PageSize.Shift);
                    if (address >= _mappedLow && address < _mappedHigh && _space.Unmap(address, PageSize.Bytes) != 0)
                    {
                        any = true;
                    }
                }
            }

            if (any)
            {
                _space.InvalidateTlb(start, (ulong)src.Length << PageSize.Shift);
            }
        }
    }

    // The invalidate callback (dmirror_interval_invalidate).
    private bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
    {
        // The driver's own migrations (and CPU faults on its pages) update the device page table themselves, so
        // nothing is erased. Unlike the kernel's callback, which returns at once, this one still moves the sequence
        // on: a fault round that read the page before it moved must start again rather than map a page that is
        // about to be freed (the kernel's table would then hold a stale placeholder; here it would be real memory).
        bool own = range.Event == MmuNotifierEvent.Migrate && ReferenceEquals(range.Owner, _device.Owner);
        if (range.Blockable)
        {
            _lock.Enter();
        }
        else if (!_lock.TryEnter())
        {
            return false;
        }

        try
        {
            subscription.SetSequence(currentSequence);
            if (!own)
            {
                EraseLocked(range.Start, range.End);
            }
        }
        finally
        {
            _lock.Exit();
        }

        return true;
    }

    // Removes the entries of [start, end), clipped to what was ever mapped, and flushes the device TLB if any
    // went. Caller holds _lock.
    private void EraseLocked(ulong start, ulong end)
    {
        ulong from = Math.Max(start & PageSize.Mask, _mappedLow);
        ulong to = Math.Min(end, _mappedHigh);
        to = (to + PageSize.Bytes - 1) & PageSize.Mask;     // never past _mappedHigh, which is page aligned
        if (from >= to)
        {
            return;
        }

        if (_space.Unmap(from, to - from) != 0)
        {
            _space.InvalidateTlb(from, to - from);
        }

        if (_space.MappedPages == 0)
        {
            _mappedLow = ulong.MaxValue;
            _mappedHigh = 0;
        }
    }

    // Maps pages and widens the mapped span. Caller holds _lock.
    private void MapLocked(ulong address, ReadOnlySpan<Pfn> pages, DevicePteFlags flags)
    {
        _space.Map(address, pages, flags);
        _mappedLow = Math.Min(_mappedLow, address);
        _mappedHigh = Math.Max(_mappedHigh, address + ((ulong)pages.Length << PageSize.Shift));
    }

    private Errno ReadInto(ref DmirrorCommand command, Span<byte> buffer)
    {
        ulong bytes = ValidateRange(in command, (ulong)buffer.Length, PageSize.Bytes);
        byte[]? bounce = RentBounce(bytes);
        try
        {
            Errno result = AccessRange(ref command, bounce, bytes, write: false);
            if (result == Errno.None && bounce is not null)
            {
                bounce.AsSpan(0, (int)bytes).CopyTo(buffer);
            }

            return result;
        }
        finally
        {
            ReturnBounce(bounce);
        }
    }

    // dmirror_read / dmirror_write: access through the device page table; at the first page that is missing (or
    // not writable, for a write), fault from there to the end, count the round, and go on from that page.
    private Errno AccessRange(ref DmirrorCommand command, byte[]? bounce, ulong bytes, bool write)
    {
        ulong start = command.Address;
        ulong end = start + bytes;
        ulong done = 0;
        ulong faults = 0;
        DeviceAccessKind kind = write ? DeviceAccessKind.Write : DeviceAccessKind.Read;
        while (true)
        {
            DeviceAccessResult access;
            Span<byte> data = bounce is null ? default : bounce.AsSpan((int)done, (int)(bytes - done));
            lock (_lock)
            {
                // Under the lock, as the kernel copies under its mutex: no invalidation can free a page mid-read.
                access = _backend.Access(_space, start + done, bytes - done, kind, data, engine: 0, replayable: false);
            }

            done += access.BytesDone;
            if (access.Completed)
            {
                break;
            }

            Errno error = Fault(start + done, end, write);
            if (error != Errno.None)
            {
                return error;
            }

            faults++;
        }

        command.CPages = bytes >> PageSize.Shift;
        command.Faults = faults;
        return Errno.None;
    }

    // dmirror_fault: fault [start, end) in, 32 pages a round, into the device page table.
    private Errno Fault(ulong start, ulong end, bool write)
    {
        // The kernel's helper returns 0 for an exited process and its read loop would then spin; here the command
        // fails as the other commands do for an exited process.
        if (!Mm.TryGet())
        {
            return Errno.EINVAL;
        }

        try
        {
            Span<ulong> pfns = stackalloc ulong[FaultChunkPages];
            Span<Pfn> pages = stackalloc Pfn[FaultChunkPages];
            for (ulong address = start; address < end;)
            {
                ulong next = Math.Min(address + ((ulong)FaultChunkPages << PageSize.Shift), end);
                Errno error = RangeFault(address, next, pfns, pages, write);
                if (error != Errno.None)
                {
                    return error;
                }

                address = next;
            }

            return Errno.None;
        }
        finally
        {
            Mm.Put();
        }
    }

    // dmirror_range_fault: the hmm_range_fault protocol for one round, with the kernel's deadline.
    private Errno RangeFault(ulong start, ulong end, Span<ulong> pfns, Span<Pfn> pages, bool write)
    {
        var range = new HmmRange
        {
            Notifier = _notifier,
            Start = start,
            End = end,
            HmmPfns = pfns,
            DefaultFlags = HmmPfn.RequestFault | (write ? HmmPfn.RequestWrite : 0),
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

            range.NotifierSequence = _notifier.ReadBegin();
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
                if (_notifier.ReadRetry(range.NotifierSequence))
                {
                    continue;
                }

                return MapFaultedLocked(start, (int)((end - start) >> PageSize.Shift), pfns, pages, write);
            }
        }
    }

    // One RangeFault event per hmm_range_fault call that did not return EBUSY (or per round that ran out of time),
    // with the EBUSY restarts before it.
    private void TraceRangeFault(ulong start, ulong end, ulong retries, Errno result)
    {
        TraceEmitter trace = _backend.Memory.Trace;
        if (trace.IsEnabled)
        {
            trace.Emit(TraceEvent.RangeFault(_backend.Device.TraceId, start, (end - start) >> PageSize.Shift, retries, result, _backend.Clock.Now));
        }
    }

    // dmirror_do_fault: every entry is valid after a faulting walk; map each page, writable where the CPU may
    // write it, in runs of equal permissions. Caller holds _lock.
    private Errno MapFaultedLocked(ulong start, int count, ReadOnlySpan<ulong> pfns, Span<Pfn> pages, bool write)
    {
        int runStart = 0;
        DevicePteFlags runFlags = DevicePteFlags.None;
        for (int i = 0; i < count; i++)
        {
            ulong entry = pfns[i];
            if ((entry & HmmPfn.Valid) == 0 || (entry & HmmPfn.Error) != 0)
            {
                throw new KernelBugException($"hmm_range_fault succeeded with an invalid entry 0x{entry:x} at 0x{start + ((ulong)i << PageSize.Shift):x}.");
            }

            DevicePteFlags flags = (entry & HmmPfn.Write) != 0 ? DevicePteFlags.Read | DevicePteFlags.Write : DevicePteFlags.Read;
            if (write && (flags & DevicePteFlags.Write) == 0)
            {
                FlushRun(start, pages, runStart, i, runFlags);
                return Errno.EFAULT;        // a write fault that did not give a writable page (the kernel WARNs)
            }

            if (flags != runFlags)
            {
                FlushRun(start, pages, runStart, i, runFlags);
                runStart = i;
                runFlags = flags;
            }

            pages[i] = HmmPfn.ToPfn(entry);
        }

        FlushRun(start, pages, runStart, count, runFlags);
        return Errno.None;
    }

    private void FlushRun(ulong start, Span<Pfn> pages, int from, int to, DevicePteFlags flags)
    {
        if (to > from)
        {
            MapLocked(start + ((ulong)from << PageSize.Shift), pages[from..to], flags);
        }
    }

    // The ioctl's common checks, and the buffer's length (pages * unit bytes; unit 0: no buffer).
    private ulong ValidateRange(in DmirrorCommand command, ulong bufferLength, int unit)
    {
        ThrowIfDisposed();
        if (!PageSize.IsAligned(command.Address))
        {
            throw new HmmException(Errno.EINVAL, $"dmirror: address 0x{command.Address:x} is not page aligned.");
        }

        if (command.Pages == 0 || command.Pages > (ulong.MaxValue >> PageSize.Shift)
            || command.Address + (command.Pages << PageSize.Shift) <= command.Address)
        {
            throw new HmmException(Errno.EINVAL, $"dmirror: {command.Pages} pages at 0x{command.Address:x} is not a valid range.");
        }

        if (unit != 0 && (command.Pages > (ulong)int.MaxValue / (ulong)unit || bufferLength != command.Pages * (ulong)unit))
        {
            throw new HmmException(Errno.EINVAL, $"dmirror: a buffer of {bufferLength} bytes for {command.Pages} pages (needs {command.Pages} x {unit}).");
        }

        return command.Pages << PageSize.Shift;
    }

    private void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            throw new HmmException(Errno.EINVAL, "dmirror: the mirror file is closed.");
        }
    }

    // The kernel's bounce buffer (vmalloc): results reach the caller's buffer only on success. None on a
    // metadata-only machine, where accesses and copies move no bytes.
    private byte[]? RentBounce(ulong bytes) =>
        _backend.Memory.StoresPageData ? ArrayPool<byte>.Shared.Rent((int)bytes) : null;

    private static void ReturnBounce(byte[]? bounce)
    {
        if (bounce is not null)
        {
            ArrayPool<byte>.Shared.Return(bounce);
        }
    }

    // Consumes the one-shot allocation failure (HMM_DMIRROR_FLAG_FAIL_ALLOC): true once, then the flag is clear.
    // Used by migrations to the device, by MigrateToSystem and by the CPU fault of a page this mirror migrated.
    internal bool TakeFailAllocation()
    {
        while (true)
        {
            int flags = Volatile.Read(ref _flags);
            if ((flags & (int)DmirrorFlags.FailAllocation) == 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _flags, flags & ~(int)DmirrorFlags.FailAllocation, flags) == flags)
            {
                return true;
            }
        }
    }

    /// <summary>The mirror's interval notifier callback; a separate object so that the callback stays internal.</summary>
    private sealed class MirrorOps(Dmirror mirror) : IMmuIntervalNotifierOps
    {
        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence) =>
            mirror.Invalidate(subscription, range, currentSequence);
    }
}
