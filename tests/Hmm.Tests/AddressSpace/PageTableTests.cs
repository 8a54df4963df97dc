using FluentAssertions;
using Xunit;

namespace Hmm.Tests.AddressSpace;

public class PageTableTests
{
    private const ulong Pmd = 2UL << 20;
    private const ulong Pud = 1UL << 30;
    private const ulong Pgd = 1UL << 39;

    private readonly PageTable _table = new();

    [Fact]
    public void NothingExistsBeforeFirstUse()
    {
        _table.Find(0x4000_0000).Should().BeNull();
        _table.Find(0).Should().BeNull();
        _table.Find(Mm.TaskSize - 1).Should().BeNull();
        _table.PteTableCount.Should().Be(0);
    }

    [Fact]
    public void FindOrAllocateCreatesOneTablePerTwoMegabytes()
    {
        PteTable first = _table.FindOrAllocate(0x4000_1234);

        first.BaseAddress.Should().Be(0x4000_0000UL);
        first.Used.Should().Be(0);
        _table.FindOrAllocate(0x4000_0000 + Pmd - 1).Should().BeSameAs(first);
        _table.Find(0x4000_0000).Should().BeSameAs(first);
        _table.PteTableCount.Should().Be(1);

        PteTable second = _table.FindOrAllocate(0x4000_0000 + Pmd);

        second.Should().NotBeSameAs(first);
        second.BaseAddress.Should().Be(0x4000_0000 + Pmd);
        _table.PteTableCount.Should().Be(2);
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(Pud - 1)]
    [InlineData(Pgd)]
    [InlineData(Mm.TaskSize - 1)]
    [InlineData(0x7f12_3456_7000UL)]
    public void TablesAreFoundAgainAtTheirAddress(ulong address)
    {
        PteTable table = _table.FindOrAllocate(address);

        table.BaseAddress.Should().Be(address & ~(Pmd - 1));
        _table.Find(address).Should().BeSameAs(table);
        _table.Find(address ^ Pmd).Should().BeNull();
    }

    [Theory]
    [InlineData(0x0UL, 0)]
    [InlineData(0xfffUL, 0)]
    [InlineData(0x1000UL, 1)]
    [InlineData(0x1ff000UL, 511)]
    [InlineData(0x200000UL, 0)]
    [InlineData(0x7fff_ffff_f000UL, 511)]
    [InlineData(0x4000_5000UL, 5)]
    public void PteIndexIsBitsTwelveToTwenty(ulong address, int index) => PageTable.PteIndex(address).Should().Be(index);

    [Fact]
    public void FreeEmptyTablesFreesOnlyEmptyTablesInsideTheRange()
    {
        const ulong Start = 0x4000_0000;
        PteTable used = _table.FindOrAllocate(Start);
        lock (used.Lock)
        {
            used.SetUnsynchronized(3, Pte.Present(new Pfn(42), writable: true));
        }

        _table.FindOrAllocate(Start + Pmd);
        PteTable outside = _table.FindOrAllocate(Start + (3 * Pmd));
        _table.PteTableCount.Should().Be(3);

        _table.FreeEmptyTables(Start, Start + (2 * Pmd));

        _table.PteTableCount.Should().Be(2);
        _table.Find(Start).Should().BeSameAs(used);
        _table.Find(Start + Pmd).Should().BeNull();
        _table.Find(Start + (3 * Pmd)).Should().BeSameAs(outside);
    }

    [Fact]
    public void FreeEmptyTablesCoversTablesTheRangeOnlyPartlyOverlaps()
    {
        _table.FindOrAllocate(0x4000_0000);

        _table.FreeEmptyTables(0x4000_0000 + 0x5000, 0x4000_0000 + 0x6000);

        _table.PteTableCount.Should().Be(0);
        _table.Find(0x4000_0000).Should().BeNull();
    }

    [Fact]
    public void FreeEmptyTablesFreesDirectoriesSoTheSpaceCanBeUsedAgain()
    {
        ulong[] addresses = [0, Pud - Pmd, Pud, Pgd, (3 * Pgd) + (7 * Pud), Mm.TaskSize - Pmd];
        foreach (ulong address in addresses)
        {
            _table.FindOrAllocate(address);
        }

        _table.PteTableCount.Should().Be(addresses.Length);

        _table.FreeEmptyTables(0, Mm.TaskSize);

        _table.PteTableCount.Should().Be(0);
        foreach (ulong address in addresses)
        {
            _table.Find(address).Should().BeNull();
            _table.NextTableAddress(address).Should().Be((address | (Pgd - 1)) + 1, "the whole top-level slot is gone");
        }

        _table.FindOrAllocate(Pud).BaseAddress.Should().Be(Pud);
        _table.PteTableCount.Should().Be(1);
    }

    [Fact]
    public void FreeingOneTableKeepsItsNeighboursDirectories()
    {
        PteTable keep = _table.FindOrAllocate(Pud + Pmd);
        lock (keep.Lock)
        {
            keep.SetUnsynchronized(0, Pte.Present(new Pfn(7), writable: false));
        }

        _table.FindOrAllocate(Pud);

        _table.FreeEmptyTables(Pud, Pud + Pmd);

        _table.Find(Pud + Pmd).Should().BeSameAs(keep);
        _table.Find(Pud).Should().BeNull();
        _table.NextTableAddress(Pud).Should().Be(Pud + Pmd, "the PMD directory is still there");
    }

    [Fact]
    public void NextTableAddressSkipsMissingDirectories()
    {
        _table.NextTableAddress(0x1234_5000).Should().Be(Pgd, "no PUD directory: skip the whole 512 GiB");

        _table.FindOrAllocate(5 * Pud);

        _table.NextTableAddress(Pud + 0x1000).Should().Be(2 * Pud, "no PMD directory: skip the 1 GiB");
        _table.NextTableAddress((5 * Pud) + (3 * Pmd) + 0x1000).Should().Be((5 * Pud) + (4 * Pmd), "a PMD directory: step 2 MiB");
    }

    [Fact]
    public void PteTableCountsItsUsedEntriesExactly()
    {
        PteTable table = _table.FindOrAllocate(0x4000_0000);
        lock (table.Lock)
        {
            table.SetUnsynchronized(0, Pte.Present(new Pfn(5), writable: true));
            table.SetUnsynchronized(1, Pte.Software(PteKind.Migration, new Pfn(6), writable: false));
            table.Used.Should().Be(2);

            table.SetUnsynchronized(0, Pte.Present(new Pfn(8), writable: false));
            table.Used.Should().Be(2, "replacing an entry keeps the count");

            table.SetUnsynchronized(1, default);
            table.SetUnsynchronized(2, default);
            table.Used.Should().Be(1, "clearing an empty entry changes nothing");

            table.SetUnsynchronized(0, default);
        }

        table.Used.Should().Be(0);
        table.Read(0).IsNone.Should().BeTrue();
        table.Read(511).IsNone.Should().BeTrue();
    }

    [Fact]
    public void PteTableReadsBackWhatWasSet()
    {
        PteTable table = _table.FindOrAllocate(0);
        Pte entry = Pte.Present(new Pfn(0x1234), writable: true, dirty: true);
        lock (table.Lock)
        {
            table.SetUnsynchronized(511, entry);
        }

        table.Read(511).Should().Be(entry);
        table.Read(510).Should().Be(default(Pte));
    }
}
