
namespace Hmm;

/// <summary>
/// A virtual memory area: a run of pages of one <see cref="Mm"/> with the same protection and backing
/// (<c>struct vm_area_struct</c>). Read-only to callers; it changes only with its address space's mmap lock
/// held for writing.
/// </summary>
public sealed class Vma
{
    internal Vma(Mm mm, ulong start, ulong end, VmFlags flags, SimFile? file, ulong pgoff, AnonVma? anonVma)
    {
        Mm = mm;
        Start = start;
        End = end;
        Flags = flags;
        File = file;
        PgOff = pgoff;
        AnonVma = anonVma;
    }

    /// <summary>The address space the area belongs to.</summary>
    public Mm Mm { get; }

    /// <summary>The first address, page aligned (<c>vm_start</c>).</summary>
    public ulong Start { get; internal set; }

    /// <summary>One past the last address, page aligned (<c>vm_end</c>).</summary>
    public ulong End { get; internal set; }

    /// <summary>Protection and kind (<c>vm_flags</c>).</summary>
    public VmFlags Flags { get; internal set; }

    /// <summary>The backing file, or null for private anonymous memory. Shared anonymous memory is backed by an internal file, as shmem backs it in the kernel.</summary>
    public SimFile? File { get; }

    /// <summary>
    /// The page offset of <see cref="Start"/> in the backing object (<c>vm_pgoff</c>): a file offset in pages, or
    /// for anonymous memory the virtual page number the area had when created, kept across moves so a page's
    /// index still finds its address.
    /// </summary>
    public ulong PgOff { get; internal set; }

    /// <summary>Whether this is private anonymous memory (no file, and not a driver's special area).</summary>
    public bool IsAnonymous => File is null && !IsSpecial;

    /// <summary>
    /// Whether a driver created the area (<see cref="Mm.MmapSpecial"/>): <see cref="VmFlags.Io"/>,
    /// <see cref="VmFlags.PfnMap"/> or <see cref="VmFlags.MixedMap"/>. Its entries are inserted by the driver, never
    /// faulted in from a file or as anonymous memory.
    /// </summary>
    public bool IsSpecial => (Flags & SpecialFlags) != 0;

    /// <summary>The flags that make an area special.</summary>
    internal const VmFlags SpecialFlags = VmFlags.Io | VmFlags.PfnMap | VmFlags.MixedMap;

    /// <summary>Whether writes are shared with other mappings (<c>VM_SHARED</c>).</summary>
    public bool IsShared => (Flags & VmFlags.Shared) != 0;

    /// <summary>The anon_vma new anonymous pages of this area join (copied-on-write pages of a private file mapping too); null for shared mappings.</summary>
    internal AnonVma? AnonVma { get; set; }

    /// <summary>Every anon_vma this area is linked into (<c>anon_vma_chain</c>): its own and, after fork, its ancestors'.</summary>
    internal List<AnonVma> AnonVmaChain { get; } = [];

    /// <summary>The page index of <paramref name="address"/> in the backing object (<c>linear_page_index</c>).</summary>
    /// <param name="address">An address inside the area.</param>
    /// <returns>The index.</returns>
    public ulong PageIndex(ulong address) => ((address - Start) >> PageSize.Shift) + PgOff;

    /// <summary>Whether the area contains the address.</summary>
    /// <param name="address">Any address.</param>
    /// <returns>True when <c>Start &lt;= address &lt; End</c>.</returns>
    public bool Contains(ulong address) => address >= Start && address < End;

    /// <summary>Formats the area as <c>/proc/pid/maps</c> does.</summary>
    /// <returns>Range, permissions and backing.</returns>
    public override string ToString() =>
        $"{Start:x}-{End:x} {((Flags & VmFlags.Read) != 0 ? 'r' : '-')}{((Flags & VmFlags.Write) != 0 ? 'w' : '-')}{((Flags & VmFlags.Exec) != 0 ? 'x' : '-')}{(IsShared ? 's' : 'p')} {PgOff:x} {File?.Name ?? "[anon]"}";

    /// <summary>A new area for part of this one, linked into the same anon_vmas (a VMA split).</summary>
    internal Vma CloneRange(Mm mm, ulong start, ulong end)
    {
        var clone = new Vma(mm, start, end, Flags, File, PgOff + ((start - Start) >> PageSize.Shift), AnonVma);
        clone.LinkAnonVmasOf(this);

        return clone;
    }

    /// <summary>Links the area into every anon_vma of <paramref name="source"/> (<c>anon_vma_clone</c>).</summary>
    internal void LinkAnonVmasOf(Vma source)
    {
        foreach (AnonVma anonVma in source.AnonVmaChain)
        {
            AnonVmaChain.Add(anonVma);
            anonVma.Link(this);
        }
    }

    /// <summary>
    /// Gives the area a new anon_vma of its own that its new anonymous pages join. Every private area gets one
    /// when it is created (the kernel attaches it lazily, at the first anonymous page: <c>anon_vma_prepare</c>).
    /// </summary>
    internal void AttachNewAnonVma(PhysicalMemory memory)
    {
        var anonVma = new AnonVma(memory);
        AnonVma = anonVma;
        AnonVmaChain.Add(anonVma);
        anonVma.Link(this);
    }

    /// <summary>Detaches the area from every anon_vma (it is being unmapped).</summary>
    internal void UnlinkAnonVmas()
    {
        foreach (AnonVma anonVma in AnonVmaChain)
        {
            anonVma.Unlink(this);
        }

        AnonVmaChain.Clear();
    }
}
