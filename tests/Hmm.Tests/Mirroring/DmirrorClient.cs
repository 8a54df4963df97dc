using System.Buffers;
using System.Diagnostics;

namespace Hmm.Tests.Mirroring;

/// <summary>
/// A mirror driver in the manner of lib/test_hmm.c's dmirror: a "device page table" keyed by virtual page
/// address, kept coherent with one address space through an interval notifier and <see cref="HmmRange"/>.
/// </summary>
/// <remarks>
/// <para>Lock rules, as in dmirror: <see cref="UpdateLock"/> (dmirror's mutex) guards the device table. The
/// invalidate callback takes it (it runs with the mmap lock held), so whoever takes both takes the mmap lock
/// first. <see cref="Snapshot"/> and <see cref="Fault"/> never hold the update lock and the mmap lock together:
/// they walk under the mmap lock, drop it, then program the table under the update lock after
/// <see cref="MmuIntervalNotifier.ReadRetry"/> said the walk is still current.</para>
/// <para>The device table holds no page references: only the notifier keeps it from going stale, which is
/// exactly the contract the tests check.</para>
/// </remarks>
internal sealed class DmirrorClient : IMmuIntervalNotifierOps, IDisposable
{
    /// <summary>Pages per <see cref="HmmRange.Fault"/> call: one PTE table (2 MiB), test_hmm's largest batch.</summary>
    public const int ChunkPages = 512;

    private const ulong ChunkBytes = (ulong)ChunkPages << PageSize.Shift;

    // Under UpdateLock: virtual page address -> HMM pfn entry (Valid, maybe Write, the frame).
    private readonly Dictionary<ulong, ulong> _table = new(ChunkPages);
    private long _invalidations;
    private long _writeViolations;

    /// <summary>Creates the client and subscribes it to <c>[start, start + length)</c> of <paramref name="mm"/>.</summary>
    public DmirrorClient(Mm mm, ulong start, ulong length, object? owner = null)
    {
        Mm = mm;
        Owner = owner ?? new object();
        Notifier = MmuIntervalNotifier.Insert(mm, start, length, this);
    }

    /// <summary>The mirrored address space.</summary>
    public Mm Mm { get; }

    /// <summary>This device's owner token (<c>dev_private_owner</c>, and the owner of its own migrations).</summary>
    public object Owner { get; }

    /// <summary>The interval subscription.</summary>
    public MmuIntervalNotifier Notifier { get; }

    /// <summary>The driver lock: guards the device table; the invalidate callback takes it.</summary>
    public object UpdateLock { get; } = new();

    /// <summary>How many invalidate callbacks cleared entries (own migrations excluded).</summary>
    public long Invalidations => Interlocked.Read(ref _invalidations);

    /// <summary>How many times a write fault produced an entry without write permission (dmirror WARNs).</summary>
    public long WriteViolations => Interlocked.Read(ref _writeViolations);

    /// <summary>
    /// Runs between a successful walk and the update under <see cref="UpdateLock"/>, with no lock held: a stress
    /// test widens the window in which an invalidation must make <see cref="MmuIntervalNotifier.ReadRetry"/> fire.
    /// </summary>
    public Action? AfterWalk { get; set; }

    /// <summary>Entries in the device table.</summary>
    public int MappedPages
    {
        get
        {
            lock (UpdateLock)
            {
                return _table.Count;
            }
        }
    }

    /// <summary>The device entry of a page, if any (takes the update lock).</summary>
    public bool TryGetEntry(ulong address, out ulong entry)
    {
        lock (UpdateLock)
        {
            return _table.TryGetValue(address & PageSize.Mask, out entry);
        }
    }

    /// <summary>A copy of the device table. Caller holds <see cref="UpdateLock"/> or accepts a racy copy.</summary>
    public KeyValuePair<ulong, ulong>[] EntriesUnsynchronized() => [.. _table];

    /// <summary>
    /// The device entries that disagree with the CPU page table: an entry whose frame is not what the CPU maps
    /// now, or a writable entry where the CPU mapping is read-only. Taken under the mmap read lock, then the
    /// update lock (the callback's order), so nothing can change during the check.
    /// </summary>
    public List<string> FindStaleEntries()
    {
        var stale = new List<string>();
        using MmapLockGuard guard = Mm.MmapReadLock();
        lock (UpdateLock)
        {
            foreach ((ulong address, ulong entry) in _table)
            {
                Pte pte = Mm.ReadPte(address);
                bool mapped = pte.IsPresent || pte.Kind == PteKind.DevicePrivate;
                if (!mapped || pte.Pfn != HmmPfn.ToPfn(entry))
                {
                    stale.Add($"0x{address:x}: device maps {HmmPfn.ToPfn(entry)}, CPU has {pte}");
                }
                else if ((entry & HmmPfn.Write) != 0 && !pte.IsWritable)
                {
                    stale.Add($"0x{address:x}: device maps {HmmPfn.ToPfn(entry)} writable, CPU has {pte}");
                }
            }
        }

        return stale;
    }

    /// <summary>Reads one byte through the device mapping; false when the device has no entry for the page.</summary>
    public bool TryRead(ulong address, out byte value)
    {
        lock (UpdateLock)
        {
            if (!_table.TryGetValue(address & PageSize.Mask, out ulong entry))
            {
                value = 0;
                return false;
            }

            value = Mm.Memory.ReadPageData(HmmPfn.ToPfn(entry))[(int)(address & (PageSize.Bytes - 1))];
            return true;
        }
    }

    /// <summary>Mirrors the current CPU state of <c>[start, end)</c> without faulting (dmirror's snapshot).</summary>
    public Errno Snapshot(ulong start, ulong end) => Mirror(start, end, 0);

    /// <summary>Faults <c>[start, end)</c> in, readable or writable, and maps it on the device (<c>dmirror_fault</c>).</summary>
    public Errno Fault(ulong start, ulong end, bool write) =>
        Mirror(start, end, HmmPfn.RequestFault | (write ? HmmPfn.RequestWrite : 0));

    /// <inheritdoc/>
    public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
    {
        // dmirror skips the invalidations of its own migrations: its table already points at the new pages.
        if (range.Event == MmuNotifierEvent.Migrate && ReferenceEquals(range.Owner, Owner))
        {
            return true;
        }

        if (range.Blockable)
        {
            Monitor.Enter(UpdateLock);
        }
        else if (!Monitor.TryEnter(UpdateLock))
        {
            return false;
        }

        try
        {
            subscription.SetSequence(currentSequence);
            ulong start = Math.Max(range.Start, subscription.Start);
            ulong end = Math.Min(range.End, subscription.End);
            if (end > start && (end - start) >> PageSize.Shift <= (ulong)_table.Count)
            {
                for (ulong address = start; address < end; address += PageSize.Bytes)
                {
                    _table.Remove(address);
                }
            }
            else
            {
                // Removing during enumeration is allowed for Dictionary.
                foreach (ulong address in _table.Keys)
                {
                    if (address >= start && address < end)
                    {
                        _table.Remove(address);
                    }
                }
            }

            _invalidations++;
        }
        finally
        {
            Monitor.Exit(UpdateLock);
        }

        return true;
    }

    /// <summary>Removes the subscription.</summary>
    public void Dispose()
    {
        if (!Notifier.IsRemoved)
        {
            Notifier.Remove();
        }
    }

    private Errno Mirror(ulong start, ulong end, ulong defaultFlags)
    {
        Debug.Assert(PageSize.IsAligned(start) && PageSize.IsAligned(end) && start < end, "The tests pass page ranges.");

        // mmget_not_zero: an exited address space has nothing left to mirror.
        if (!Mm.TryGet())
        {
            return Errno.ESRCH;
        }

        ulong[] buffer = ArrayPool<ulong>.Shared.Rent(ChunkPages);
        try
        {
            for (ulong chunk = start; chunk < end;)
            {
                ulong chunkEnd = Math.Min(end, (chunk | (ChunkBytes - 1)) + 1);
                Errno error = MirrorChunk(chunk, chunkEnd, defaultFlags, buffer.AsSpan(0, (int)((chunkEnd - chunk) >> PageSize.Shift)));
                if (error != Errno.None)
                {
                    return error;
                }

                chunk = chunkEnd;
            }

            return Errno.None;
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(buffer);
            Mm.Put();
        }
    }

    // One batch: the kernel's collision-retry protocol, bounded by HMM_RANGE_DEFAULT_TIMEOUT.
    private Errno MirrorChunk(ulong start, ulong end, ulong defaultFlags, Span<ulong> pfns)
    {
        long deadline = Environment.TickCount64 + (long)HmmRange.DefaultTimeout.TotalMilliseconds;
        while (true)
        {
            if (Environment.TickCount64 > deadline)
            {
                return Errno.EBUSY;
            }

            pfns.Clear();
            var range = new HmmRange
            {
                Notifier = Notifier,
                Start = start,
                End = end,
                HmmPfns = pfns,
                DefaultFlags = defaultFlags,
                PfnFlagsMask = 0,
                DevicePrivateOwner = Owner,
            };
            range.NotifierSequence = Notifier.ReadBegin();
            Errno error;
            using (Mm.MmapReadLock())
            {
                error = range.Fault();
            }

            if (error == Errno.EBUSY)
            {
                continue;
            }

            if (error != Errno.None)
            {
                return error;
            }

            AfterWalk?.Invoke();
            lock (UpdateLock)
            {
                if (Notifier.ReadRetry(range.NotifierSequence))
                {
                    continue;
                }

                return UpdateUnsynchronized(start, pfns, (defaultFlags & HmmPfn.RequestWrite) != 0);
            }
        }
    }

    private Errno UpdateUnsynchronized(ulong start, ReadOnlySpan<ulong> pfns, bool write)
    {
        for (int i = 0; i < pfns.Length; i++)
        {
            ulong entry = pfns[i];
            if ((entry & HmmPfn.Valid) == 0)
            {
                continue;
            }

            if (write && (entry & HmmPfn.Write) == 0)
            {
                // dmirror_do_fault: a write fault that produced a read-only page is a bug (WARN + -EFAULT).
                Interlocked.Increment(ref _writeViolations);
                return Errno.EFAULT;
            }

            _table[start + ((ulong)i << PageSize.Shift)] = entry & (HmmPfn.Valid | HmmPfn.Write | ~HmmPfn.FlagsMask);
        }

        return Errno.None;
    }
}
