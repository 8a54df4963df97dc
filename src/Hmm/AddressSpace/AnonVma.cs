namespace Hmm;

/// <summary>
/// The reverse-map anchor of anonymous pages (<c>struct anon_vma</c>): every area that may map a page created
/// under it. A page's <see cref="PageFrame.Mapping"/> names one of these. Fork links the child's areas
/// into the parent's anon_vmas, so the rmap of a copy-on-write page finds both processes.
/// </summary>
/// <remarks>
/// <para>Concurrency model: <see cref="_lock"/> (the anon_vma rwsem) guards the area list; it is taken inside
/// the mmap lock, never the other way round.</para>
/// <para>Lifetime: an area is only ever linked into an anon_vma that another linked area already uses (split,
/// fork, mremap) or into a new one, so once the last area unlinks no page can be mapped under it again; its
/// handle is then released for reuse (the kernel frees the anon_vma). A page still carrying the stale handle is
/// unmapped, and the rmap checks every candidate entry against the page, so a reused handle finds nothing.</para>
/// <para>The rmap lock (the kernel's anon_vma rwsem as <c>anon_vma_lock_read</c>/<c>_write</c> use it): a reverse-map
/// walk holds it shared from taking its snapshot of areas to checking the last entry; mremap holds it exclusive while it
/// moves entries between areas, so a walk never finds an entry at neither address. Taken inside the mmap lock and any
/// page lock, outside PTE locks.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable", Justification = "The rmap lock lives as long as the anon_vma object, which walkers may still hold after it is unlinked.")]
internal sealed class AnonVma
{
    private readonly ReaderWriterLockSlim _rmapLock = new(LockRecursionPolicy.SupportsRecursion);
    private readonly Lock _lock = new();
    private readonly List<Vma> _vmas = [];
    private readonly PhysicalMemory _memory;

    public AnonVma(PhysicalMemory memory)
    {
        _memory = memory;
        Handle = memory.Mappings.Register(this);
    }

    /// <summary>The number stored in pages' mapping field.</summary>
    public ulong Handle { get; }

    public void Link(Vma vma)
    {
        lock (_lock)
        {
            _vmas.Add(vma);
        }
    }

    public void Unlink(Vma vma)
    {
        lock (_lock)
        {
            if (_vmas.Remove(vma) && _vmas.Count == 0)
            {
                _memory.Mappings.Unregister(Handle);
            }
        }
    }

    /// <summary>A snapshot of the linked areas.</summary>
    public Vma[] Snapshot()
    {
        lock (_lock)
        {
            return [.. _vmas];
        }
    }

    /// <summary>The lock of the area list, for walks that read <see cref="VmasUnsynchronized"/> without copying it; PTE locks may be taken inside it.</summary>
    public Lock ListLock => _lock;

    /// <summary>The linked areas. Read only with <see cref="ListLock"/> held.</summary>
    public List<Vma> VmasUnsynchronized => _vmas;

    /// <summary>Takes the rmap lock shared for a reverse-map walk (<c>anon_vma_lock_read</c>).</summary>
    public void EnterRmapRead() => _rmapLock.EnterReadLock();

    /// <summary>Releases the shared rmap lock.</summary>
    public void ExitRmapRead() => _rmapLock.ExitReadLock();

    /// <summary>Takes the rmap lock of every anon_vma in <paramref name="chain"/> exclusive, in handle order (so two movers cannot deadlock), and returns them for <see cref="ExitRmapWrite"/>.</summary>
    public static AnonVma[] EnterRmapWrite(List<AnonVma> chain)
    {
        AnonVma[] locked = [.. chain];
        Array.Sort(locked, static (x, y) => x.Handle.CompareTo(y.Handle));
        foreach (AnonVma anonVma in locked)
        {
            anonVma._rmapLock.EnterWriteLock();
        }

        return locked;
    }

    /// <summary>Releases what <see cref="EnterRmapWrite"/> took.</summary>
    public static void ExitRmapWrite(AnonVma[] locked)
    {
        for (int i = locked.Length - 1; i >= 0; i--)
        {
            locked[i]._rmapLock.ExitWriteLock();
        }
    }
}
