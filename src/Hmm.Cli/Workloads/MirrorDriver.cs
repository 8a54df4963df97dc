
namespace Hmm.Cli.Workloads;

/// <summary>
/// A minimal mirror driver for the built-in workload: a device page table (virtual page to HMM PFN entry)
/// filled through <c>hmm_range_fault</c> with the kernel's retry protocol and emptied by its interval
/// notifier's invalidate callback.
/// </summary>
internal sealed class MirrorDriver : IMmuIntervalNotifierOps
{
    private readonly Lock _updateLock = new();
    private readonly Dictionary<ulong, ulong> _deviceTable = [];
    private readonly Mm _mm;
    private readonly MmuIntervalNotifier _notifier;
    private readonly ulong[] _pfns = new ulong[512];
    private readonly ulong _start;
    private readonly ulong _end;

    public MirrorDriver(Mm mm, ulong start, ulong length)
    {
        _mm = mm;
        _start = start;
        _end = start + length;
        _notifier = MmuIntervalNotifier.Insert(mm, start, length, this);
    }

    public int Invalidations { get; private set; }

    public int Retries { get; private set; }

    public int MappedPages
    {
        get
        {
            lock (_updateLock)
            {
                return _deviceTable.Count;
            }
        }
    }

    /// <summary>Mirrors <c>[start, end)</c> (at most 2 MiB), faulting pages in when <paramref name="fault"/> is set.</summary>
    public Errno Mirror(ulong start, ulong end, bool fault, bool write)
    {
        var range = new HmmRange
        {
            Notifier = _notifier,
            Start = start,
            End = end,
            HmmPfns = _pfns,
            DefaultFlags = fault ? HmmPfn.RequestFault | (write ? HmmPfn.RequestWrite : 0) : 0,
        };

        while (true)
        {
            range.NotifierSequence = _notifier.ReadBegin();
            Errno result;
            using (_mm.MmapReadLock())
            {
                result = range.Fault();
            }

            if (result == Errno.EBUSY)
            {
                Retries++;
                continue;
            }

            if (result != Errno.None)
            {
                return result;
            }

            lock (_updateLock)
            {
                if (_notifier.ReadRetry(range.NotifierSequence))
                {
                    Retries++;
                    continue;
                }

                for (ulong address = start; address < end; address += 4096)
                {
                    ulong entry = _pfns[(address - start) >> 12];
                    if ((entry & HmmPfn.Valid) != 0)
                    {
                        _deviceTable[address] = entry;
                    }
                }

                return Errno.None;
            }
        }
    }

    public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
    {
        lock (_updateLock)
        {
            subscription.SetSequence(currentSequence);
            Invalidations++;
            for (ulong address = Math.Max(range.Start, _start); address < Math.Min(range.End, _end); address += 4096)
            {
                _deviceTable.Remove(address);
            }
        }

        return true;
    }
}
