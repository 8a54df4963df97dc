namespace Hmm.AddressSpace;

/// <summary>
/// The reverse-map anchor of anonymous pages (<c>struct anon_vma</c>): every area that may map a page created
/// under it. A page's <see cref="Memory.PageFrame.Mapping"/> names one of these. Fork links the child's areas
/// into the parent's anon_vmas, so the rmap of a copy-on-write page finds both processes.
/// </summary>
/// <remarks>Concurrency model: <see cref="_lock"/> (the anon_vma rwsem) guards the area list; it is taken inside
/// the mmap lock, never the other way round.</remarks>
internal sealed class AnonVma
{
    private readonly Lock _lock = new();
    private readonly List<Vma> _vmas = [];

    public AnonVma(Memory.PhysicalMemory memory) => Handle = memory.Mappings.Register(this);

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
            _vmas.Remove(vma);
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
