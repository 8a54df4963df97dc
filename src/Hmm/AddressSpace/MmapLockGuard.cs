namespace Hmm;

/// <summary>Holds an address space's mmap lock until disposed, on the thread that took it. Allocation-free.</summary>
public readonly ref struct MmapLockGuard
{
    private readonly ReaderWriterLockSlim? _lock;
    private readonly bool _write;

    internal MmapLockGuard(ReaderWriterLockSlim mmapLock, bool write)
    {
        _lock = mmapLock;
        _write = write;
    }

    /// <summary>Releases the lock.</summary>
    public void Dispose()
    {
        if (_write)
        {
            _lock?.ExitWriteLock();
        }
        else
        {
            _lock?.ExitReadLock();
        }
    }
}
