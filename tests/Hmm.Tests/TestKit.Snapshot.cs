using FluentAssertions;

namespace Hmm.Tests;

/// <summary>
/// Everything an error must leave as it was: the areas (range, flags, pgoff), free RAM, the number of PTE tables,
/// and for the watched pages the raw entry and, for present entries, the bytes of the page, read from the frame
/// without faulting anything in.
/// </summary>
internal sealed class MmSnapshot
{
    private const ulong WatchedPagesPerAreaEnd = 16;

    private MmSnapshot(Mm mm)
    {
        Mm = mm;
    }

    public Mm Mm { get; }

    public (ulong Start, ulong End, VmFlags Flags, ulong PgOff)[] Areas { get; private set; } = [];

    public ulong FreeRamPages { get; private set; }

    public int PteTables { get; private set; }

    public List<ulong> Addresses { get; } = [];

    public Dictionary<ulong, ulong> Entries { get; } = [];

    public Dictionary<ulong, byte[]> Data { get; } = [];

    /// <summary>
    /// Captures the state of <paramref name="mm"/>, watching the first and last pages of each area and every page
    /// of <paramref name="extra"/>.
    /// </summary>
    public static MmSnapshot Capture(Mm mm, params (ulong Start, ulong End)[] extra)
    {
        var snapshot = new MmSnapshot(mm)
        {
            Areas = mm.AreaShapes(),
            FreeRamPages = mm.Memory.FreeRamPages,
            PteTables = mm.PageTable.PteTableCount,
        };

        var watched = new SortedSet<ulong>();
        foreach ((ulong start, ulong end, _, _) in snapshot.Areas)
        {
            Watch(watched, start, Math.Min(end, start + (WatchedPagesPerAreaEnd * TestKit.Page)));
            Watch(watched, Math.Max(start, end - (WatchedPagesPerAreaEnd * TestKit.Page)), end);
        }

        foreach ((ulong start, ulong end) in extra)
        {
            Watch(watched, start, end);
        }

        foreach (ulong address in watched)
        {
            snapshot.Addresses.Add(address);
            Pte pte = mm.ReadPte(address);
            snapshot.Entries[address] = pte.Raw;
            if (pte.IsPresent && mm.Memory.IsPresent(pte.Pfn))
            {
                snapshot.Data[address] = mm.Memory.ReadPageData(pte.Pfn).ToArray();
            }
        }

        return snapshot;
    }

    /// <summary>Asserts that nothing this snapshot saw has changed.</summary>
    public void ShouldBeUnchanged()
    {
        MmSnapshot now = Capture(Mm, [.. Addresses.Select(a => (a, a + TestKit.Page))]);
        now.Areas.Should().Equal(Areas, "the areas are unchanged");
        now.FreeRamPages.Should().Be(FreeRamPages, "no page was allocated or freed");
        now.PteTables.Should().Be(PteTables, "no page table was allocated or freed");
        foreach (ulong address in Addresses)
        {
            now.Entries[address].Should().Be(Entries[address], $"the entry at 0x{address:x} is unchanged");
            if (Data.TryGetValue(address, out byte[]? bytes))
            {
                now.Data[address].Should().Equal(bytes, $"the page at 0x{address:x} holds the same bytes");
            }
        }

        // The same bytes through the CPU, where the area allows reads. The entries are present, so reading
        // them faults nothing in and changes nothing.
        foreach ((ulong address, byte[] bytes) in Data)
        {
            (ulong Start, ulong End, VmFlags Flags, ulong PgOff) area = Areas.FirstOrDefault(v => v.Start <= address && address < v.End);
            if ((area.Flags & VmFlags.Read) != 0)
            {
                TestKit.ReadBytes(Mm, address, TestKit.Page).Should().Equal(bytes, $"the CPU reads the same bytes at 0x{address:x}");
            }
        }

        Capture(Mm, [.. Addresses.Select(a => (a, a + TestKit.Page))]).Entries.Should().Equal(now.Entries, "reading back changed no entry");
    }

    private static void Watch(SortedSet<ulong> watched, ulong start, ulong end)
    {
        for (ulong address = start & PageSize.Mask; address < end; address += TestKit.Page)
        {
            watched.Add(address);
        }
    }
}
