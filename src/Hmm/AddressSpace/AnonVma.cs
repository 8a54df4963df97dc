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
/// </remarks>
internal sealed class AnonVma
{
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
}
