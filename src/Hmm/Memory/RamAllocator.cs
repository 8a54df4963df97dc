namespace Hmm;

/// <summary>
/// The System RAM page allocator: order-0 pages from <c>[FirstPfn, EndPfn)</c>, O(1) per operation. Frames
/// never handed out sit above a watermark; freed frames go on a LIFO stack, so the same sequence of calls
/// always returns the same frames (determinism).
/// </summary>
/// <remarks>Concurrency model: every member takes <see cref="_lock"/>; it guards only the free-frame
/// bookkeeping, never a <see cref="PageFrame"/>, so no other lock is ever taken inside it.</remarks>
internal sealed class RamAllocator
{
    private readonly Lock _lock = new();
    private readonly ulong _firstPfn;
    private readonly ulong _endPfn;
    private ulong _watermark;
    private ulong[] _freed = new ulong[64];
    private int _freedCount;

    public RamAllocator(ulong firstPfn, ulong endPfn)
    {
        _firstPfn = firstPfn;
        _watermark = firstPfn;
        _endPfn = endPfn;
        TotalPages = endPfn - firstPfn;
    }

    public ulong TotalPages { get; }

    public ulong FreePages
    {
        get
        {
            lock (_lock)
            {
                return _endPfn - _watermark + (ulong)_freedCount;
            }
        }
    }

    public bool TryAllocate(out Pfn pfn)
    {
        lock (_lock)
        {
            if (_freedCount > 0)
            {
                pfn = new Pfn(_freed[--_freedCount]);
                return true;
            }

            if (_watermark < _endPfn)
            {
                pfn = new Pfn(_watermark++);
                return true;
            }
        }

        pfn = default;
        return false;
    }

    /// <summary>Takes frames back under one lock round trip, in order (the last one is handed out first). As <see cref="Free"/> for each.</summary>
    public void FreeMany(ReadOnlySpan<ulong> pfns)
    {
        foreach (ulong pfn in pfns)
        {
            if (pfn < _firstPfn || pfn >= _endPfn)
            {
                ThrowHelper.ThrowBug($"Freeing pfn 0x{pfn:x} to the RAM allocator, which manages only [pfn 0x{_firstPfn:x}, pfn 0x{_endPfn:x}).");
            }
        }

        lock (_lock)
        {
            if (_freedCount + pfns.Length > _freed.Length)
            {
                Array.Resize(ref _freed, Math.Max(_freed.Length * 2, _freedCount + pfns.Length));
            }

            pfns.CopyTo(_freed.AsSpan(_freedCount));
            _freedCount += pfns.Length;
        }
    }

    /// <summary>Takes a frame back. Only frames this allocator manages: a reserved frame below it must never arrive here.</summary>
    public void Free(Pfn pfn)
    {
        if (pfn.Value < _firstPfn || pfn.Value >= _endPfn)
        {
            ThrowHelper.ThrowBug($"Freeing {pfn} to the RAM allocator, which manages only [pfn 0x{_firstPfn:x}, pfn 0x{_endPfn:x}).");
        }

        lock (_lock)
        {
            if (_freedCount == _freed.Length)
            {
                Array.Resize(ref _freed, _freed.Length * 2);
            }

            _freed[_freedCount++] = pfn.Value;
        }
    }
}
