using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// The two-level table from section number to <see cref="Section"/> (the kernel's <c>mem_section</c> roots).
/// Leaves are created on demand and never freed, so a reader needs no lock: it reads the root slot and the
/// leaf slot with acquire semantics. Writers hold the hotplug lock of the owning <see cref="PhysicalMemory"/>.
/// </summary>
internal sealed class SectionTable
{
    private const int LeafBits = 9;
    private const int LeafSize = 1 << LeafBits;
    private const ulong SectionCount = Pfn.Limit >> Section.PageShift;
    private const int RootSize = (int)(SectionCount >> LeafBits);

    private readonly Section?[]?[] _root = new Section?[]?[RootSize];

    /// <summary>The section holding <paramref name="pfn"/>, or null if that memory is not present.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Section? Find(Pfn pfn)
    {
        ulong number = pfn.Value >> Section.PageShift;
        if (number >= SectionCount)
        {
            return null;
        }

        Section?[]? leaf = Volatile.Read(ref _root[number >> LeafBits]);
        return leaf is null ? null : Volatile.Read(ref leaf[number & (LeafSize - 1)]);
    }

    /// <summary>Returns the section with the given number, creating it if absent. Caller holds the hotplug lock.</summary>
    public Section GetOrAddUnsynchronized(ulong number, out bool created)
    {
        ref Section?[]? leafSlot = ref _root[number >> LeafBits];
        Section?[]? leaf = leafSlot;
        if (leaf is null)
        {
            leaf = new Section?[LeafSize];
            Volatile.Write(ref leafSlot, leaf);
        }

        ref Section? slot = ref leaf[number & (LeafSize - 1)];
        if (slot is { } existing)
        {
            created = false;
            return existing;
        }

        var section = new Section(number);
        Volatile.Write(ref slot, section);
        created = true;
        return section;
    }

    /// <summary>Unpublishes a section. Caller holds the hotplug lock and has proven no page in it is referenced.</summary>
    public void RemoveUnsynchronized(ulong number)
    {
        Section?[]? leaf = _root[number >> LeafBits];
        if (leaf is not null)
        {
            Volatile.Write(ref leaf[number & (LeafSize - 1)], null);
        }
    }
}
