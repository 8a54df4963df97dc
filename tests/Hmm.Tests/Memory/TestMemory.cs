
namespace Hmm.Tests.Memory;

/// <summary>Small machines and well-known device addresses for the tests.</summary>
internal static class TestMemory
{
    public const ulong MiB = 1UL << 20;

    /// <summary>The memory section size (<c>SECTION_SIZE_BITS</c> 27).</summary>
    public const ulong SectionBytes = 128 * MiB;

    /// <summary>A section-aligned physical address far above the test machines' RAM, free for device ranges.</summary>
    public const ulong DeviceBase = 64UL << 30;

    /// <summary>How long a test waits for something that must happen before it fails instead of hanging.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>A machine with a few MiB of RAM (RAM frames are 1..RamPages).</summary>
    public static PhysicalMemory Create(ulong ramMiB = 4, bool storePageData = true) =>
        new(new PhysicalMemoryOptions { RamBytes = ramMiB * MiB, StorePageData = storePageData });

    /// <summary>A device range at <see cref="DeviceBase"/> + <paramref name="offsetMiB"/>.</summary>
    public static PhysicalRange DeviceRange(ulong offsetMiB, ulong lengthMiB = 2) =>
        new(DeviceBase + (offsetMiB * MiB), lengthMiB * MiB);

    /// <summary>Every frame of the range, in order.</summary>
    public static IEnumerable<Pfn> Pfns(PhysicalRange range)
    {
        for (ulong i = 0; i < range.PageCount; i++)
        {
            yield return range.StartPfn + i;
        }
    }

    /// <summary>The first, second, middle and last frames of the range: enough to see a partial (un)registration.</summary>
    public static Pfn[] Probes(PhysicalRange range) =>
        [range.StartPfn, range.StartPfn + 1, range.StartPfn + (range.PageCount / 2), range.StartPfn + (range.PageCount - 1)];
}
