using System.Globalization;
using System.Text;

namespace Hmm.Tests.Memory;

/// <summary>
/// What a test can observe of a <see cref="PhysicalMemory"/>: free RAM, the resource list, and the state of chosen
/// frames (present, section allocated, refcount, mapcount, flags, owner, lookup). Two snapshots compare equal when nothing changed.
/// Taking one changes nothing (it reads the lookup without taking references).
/// </summary>
internal sealed record MemorySnapshot(ulong FreeRamPages, string Resources, string Pages)
{
    public static MemorySnapshot Take(PhysicalMemory memory, params IEnumerable<Pfn> pfns)
    {
        var resources = new StringBuilder();
        foreach (IoResource resource in memory.Resources())
        {
            resources.Append(CultureInfo.InvariantCulture, $"{resource.Name} {resource.Range}; ");
        }

        var pages = new StringBuilder();
        foreach (Pfn pfn in pfns)
        {
            int lookup = memory.FindPagemapId(pfn);
            if (!memory.IsPresent(pfn))
            {
                pages.Append(CultureInfo.InvariantCulture, $"{pfn}: absent, section {memory.HasSection(pfn)}, lookup {lookup}\n");
                continue;
            }

            ref readonly PageFrame frame = ref memory.Page(pfn);
            pages.Append(
                CultureInfo.InvariantCulture,
                $"{pfn}: refcount {frame.RefCount}, mapcount {frame.MapCount}, flags {frame.Flags}, pagemap {frame.PagemapId}, lookup {lookup}\n");
        }

        return new MemorySnapshot(memory.FreeRamPages, resources.ToString(), pages.ToString());
    }
}
