namespace Hmm;

/// <summary>
/// One memory section of the sparse memmap (the kernel's <c>struct mem_section</c>, SPARSEMEM_VMEMMAP):
/// the <see cref="PageFrame"/> array for <see cref="PagesPerSection"/> frames, plus, per 2 MiB subsection,
/// which device pagemap owns it and, lazily, the 2 MiB block holding the pages' data.
/// </summary>
/// <remarks>
/// <para>Concurrency model: a section is created and removed under <see cref="PhysicalMemory"/>'s hotplug
/// lock and published with a volatile write, so lock-free readers see either nothing or a fully built
/// section. The frames array never moves while the section exists, so a <c>ref PageFrame</c> taken by a holder
/// of a page reference stays valid: teardown removes a section only after every reference to its device
/// pages is gone. Garbage collection stands in for the kernel's RCU grace period for racing lookups.</para>
/// </remarks>
internal sealed class Section
{
    /// <summary><c>SECTION_SIZE_BITS</c> on x86-64 is 27 (128 MiB).</summary>
    public const int SizeBits = 27;
    public const int PageShift = SizeBits - PageSize.Shift;
    public const int PagesPerSection = 1 << PageShift;
    public const ulong PageMask = PagesPerSection - 1;

    /// <summary><c>SUBSECTION_SHIFT</c> is 21 (2 MiB): the granularity of device memory hotplug.</summary>
    public const int SubsectionBits = 21;
    public const int SubsectionPageShift = SubsectionBits - PageSize.Shift;
    public const int PagesPerSubsection = 1 << SubsectionPageShift;
    public const int SubsectionsPerSection = PagesPerSection / PagesPerSubsection;
    public const ulong SubsectionBytes = 1UL << SubsectionBits;

    public Section(ulong number)
    {
        Number = number;
        Frames = GC.AllocateArray<PageFrame>(PagesPerSection, pinned: true);
        SubsectionPagemap = new int[SubsectionsPerSection];
        Data = new byte[SubsectionsPerSection][];
    }

    public ulong Number { get; }

    public PageFrame[] Frames { get; }

    /// <summary>
    /// Per subsection: <see cref="PhysicalMemory.OfflineSubsection"/> (a hole), <see cref="PhysicalMemory.RamSubsection"/>,
    /// or the positive id of the owning device pagemap. This is the PFN-to-pagemap lookup (the kernel's <c>pgmap_array</c>).
    /// </summary>
    public int[] SubsectionPagemap { get; }

    /// <summary>Per subsection: its pages' data (2 MiB), allocated on first touch; null until then.</summary>
    public byte[]?[] Data { get; }

    /// <summary>How many subsections are online (RAM or a device range); the section goes when this reaches 0.</summary>
    public int OnlineSubsections { get; set; }
}
