using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

public class MmMunmapTests
{
    private const ulong Base = 0x4000_0000;

    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _mm;

    public MmMunmapTests()
    {
        _mm = new Mm(_memory);
    }

    [Fact]
    public void UnmapOfAWholeAreaRemovesItAndFreesItsPagesAndTables()
    {
        ulong free = _memory.FreeRamPages;
        ulong a = _mm.MapAnonymous(8);
        Fill(_mm, a, 8, seed: 1);
        _memory.FreeRamPages.Should().Be(free - 8);

        _mm.Munmap(a, 8 * Page);

        _mm.Areas().Should().BeEmpty();
        _memory.FreeRamPages.Should().Be(free);
        _mm.PageTable.PteTableCount.Should().Be(0);
        _mm.ReadPte(a).IsNone.Should().BeTrue();
        ((Action)(() => _mm.Read(a, new byte[1]))).ShouldSegfault().IsBusError.Should().BeFalse();
    }

    [Fact]
    public void UnmapOfTheHeadKeepsTheTailWithItsPgOff()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        ulong free = _memory.FreeRamPages;

        _mm.Munmap(a, Page);

        Vma tail = _mm.Areas().Single();
        (tail.Start, tail.End, tail.PgOff).Should().Be((a + Page, a + (4 * Page), (a >> PageSize.Shift) + 1));
        _memory.FreeRamPages.Should().Be(free + 1);
        _mm.ShouldHold(a + Page, 3, seed: 1);
    }

    [Fact]
    public void UnmapOfTheTailKeepsTheHead()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        ulong free = _memory.FreeRamPages;

        _mm.Munmap(a + (3 * Page), Page);

        Vma head = _mm.Areas().Single();
        (head.Start, head.End, head.PgOff).Should().Be((a, a + (3 * Page), a >> PageSize.Shift));
        _memory.FreeRamPages.Should().Be(free + 1);
        _mm.ShouldHold(a, 3, seed: 1);
    }

    [Fact]
    public void UnmapOfTheMiddleOfAFileMappingSplitsItWithCorrectPgOffs()
    {
        SimFile file = PatternFile(_memory, 8, seed: 3);
        ulong a = _mm.Mmap(Base, 6 * Page, Protection.Read, MapFlags.Shared | MapFlags.FixedNoReplace, file, offset: Page);
        _mm.ShouldHoldFrom(a, 6, Page, seed: 3);

        _mm.Munmap(a + (2 * Page), 2 * Page);

        _mm.Areas().Select(v => (v.Start, v.End, v.PgOff, v.File)).Should().Equal(
            (a, a + (2 * Page), 1UL, file),
            (a + (4 * Page), a + (6 * Page), 5UL, file));
        _mm.ShouldHoldFrom(a, 2, Page, seed: 3);
        _mm.ShouldHoldFrom(a + (4 * Page), 2, 5 * Page, seed: 3);
        ((Action)(() => _mm.Read(a + (3 * Page), new byte[1]))).ShouldSegfault();
    }

    [Fact]
    public void SplitHalvesOfAnonymousMemoryKeepTheirPagesFindableByRmap()
    {
        ulong a = _mm.MapAnonymousAt(Base, 3);
        Fill(_mm, a, 3, seed: 1);
        Pfn last = _mm.ReadPte(a + (2 * Page)).Pfn;

        _mm.Munmap(a + Page, Page);

        _mm.Areas().Select(v => v.PgOff).Should().Equal(a >> PageSize.Shift, (a >> PageSize.Shift) + 2);
        Rmap.FindMappings(_memory, last).Should().ContainSingle().Which.Address.Should().Be(a + (2 * Page));
    }

    [Fact]
    public void UnmapAcrossSeveralAreasAndHolesRemovesOnlyTheCoveredParts()
    {
        ulong a = _mm.MapAnonymousAt(Base, 3);
        ulong b = _mm.MapAnonymousAt(Base + (5 * Page), 3);
        ulong c = _mm.MapAnonymousAt(Base + (10 * Page), 2);
        Fill(_mm, a, 3, seed: 1);
        Fill(_mm, b, 3, seed: 2);
        Fill(_mm, c, 2, seed: 3);
        ulong free = _memory.FreeRamPages;

        _mm.Munmap(a + (2 * Page), 9 * Page);

        _mm.Areas().Select(v => (v.Start, v.End)).Should().Equal((a, a + (2 * Page)), (c + Page, c + (2 * Page)));
        _memory.FreeRamPages.Should().Be(free + 1 + 3 + 1);
        _mm.ShouldHold(a, 2, seed: 1);
        _mm.ShouldHold(c + Page, 1, seed: 3);
    }

    [Fact]
    public void UnmapOfAnUnmappedRangeSucceedsAndChangesNothing()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        MmSnapshot before = MmSnapshot.Capture(_mm, (a + (2 * Page), a + (8 * Page)));

        _mm.Munmap(a + (2 * Page), 6 * Page);
        _mm.Munmap(0x7000_0000_0000, 1UL << 30);

        before.ShouldBeUnchanged();
    }

    [Theory]
    [InlineData(1UL)]
    [InlineData(4095UL)]
    [InlineData(4096UL)]
    public void LengthIsRoundedUpToWholePages(ulong length)
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);

        _mm.Munmap(a, length);

        _mm.Areas().Single().Start.Should().Be(a + Page);
    }

    [Fact]
    public void UnmapOfPartOfATableKeepsTheTableUntilItIsEmpty()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        _mm.PageTable.PteTableCount.Should().Be(1);

        _mm.Munmap(a, 2 * Page);
        _mm.PageTable.PteTableCount.Should().Be(1);
        _mm.ShouldHold(a + (2 * Page), 2, seed: 1);

        _mm.Munmap(a + (2 * Page), 2 * Page);
        _mm.PageTable.PteTableCount.Should().Be(0);
    }

    [Fact]
    public void UnmapOfMemorySpanningSeveralTablesAndDirectoriesFreesThemAll()
    {
        const ulong Start = (1UL << 30) - (2 * Page);
        ulong free = _memory.FreeRamPages;
        _mm.MapAnonymousAt(Start, 4);
        ulong far = _mm.MapAnonymousAt(0x7f00_0000_0000, 1);
        Fill(_mm, Start, 4, seed: 1);
        Fill(_mm, far, 1, seed: 2);
        _mm.PageTable.PteTableCount.Should().Be(3, "the first area straddles a 1 GiB boundary and the other is far away");

        _mm.Munmap(Start, 4 * Page);
        _mm.Munmap(far, Page);

        _mm.PageTable.PteTableCount.Should().Be(0);
        _memory.FreeRamPages.Should().Be(free);
        _mm.PageTable.Find(Start).Should().BeNull();
        _mm.PageTable.Find(far).Should().BeNull();
    }

    [Fact]
    public void UnmapOfReadOnlyZeroPageEntriesFreesNothingButTheirTables()
    {
        ulong a = _mm.MapAnonymous(4, Protection.Read);
        _mm.ShouldReadZeros(a, 4);
        ulong free = _memory.FreeRamPages;
        int zeroPageRefs = _memory.PageRefCount(PhysicalMemory.ZeroPage);

        _mm.Munmap(a, 4 * Page);

        _memory.FreeRamPages.Should().Be(free);
        _memory.PageRefCount(PhysicalMemory.ZeroPage).Should().Be(zeroPageRefs);
        _mm.PageTable.PteTableCount.Should().Be(0);
    }

    [Fact]
    public void UnmapOfAFileMappingLeavesItsPagesInThePageCache()
    {
        SimFile file = PatternFile(_memory, 2, seed: 1);
        ulong free = _memory.FreeRamPages;
        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Shared, file);
        _mm.Write(a, [42]);
        Pfn page = _mm.ReadPte(a).Pfn;
        _memory.Page(page).MapCount.Should().Be(1);

        _mm.Munmap(a, 2 * Page);

        _memory.FreeRamPages.Should().Be(free);
        _memory.Page(page).MapCount.Should().Be(0);
        _memory.Page(page).RefCount.Should().Be(1, "the page cache keeps its reference");
        _memory.Page(page).Flags.Should().HaveFlag(PageFlags.Dirty, "the dirty entry passed its dirtiness to the page");
        var b = new byte[1];
        file.Read(0, b);
        b[0].Should().Be(42);
    }

    [Fact]
    public void UnmapOfTheLastAreaOfAnAnonVmaReleasesItsHandle()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        ulong handle = AnonVmaHandle(a);
        _memory.Page(_mm.ReadPte(a).Pfn).Mapping.Should().Be(handle);

        _mm.Munmap(a + Page, Page);
        _memory.Mappings.Find(handle).Should().NotBeNull("both halves still use it");
        _mm.Munmap(a, Page);
        _memory.Mappings.Find(handle).Should().NotBeNull("the tail still uses it");
        _mm.Munmap(a + (2 * Page), 2 * Page);

        _memory.Mappings.Find(handle).Should().BeNull();
    }

    [Fact]
    public void RepeatedMapAndUnmapDoesNotAccumulateAnonVmas()
    {
        ulong first = 0;
        for (int i = 0; i < 100; i++)
        {
            ulong a = _mm.MapAnonymous(1);
            _mm.Write(a, [1]);
            ulong handle = AnonVmaHandle(a);
            first = i == 0 ? handle : first;
            handle.Should().Be(first, "the released handle is reused");
            _mm.Munmap(a, Page);
        }
    }

    [Fact]
    public void AnAnonVmaSharedWithAForkedChildLivesUntilBothAreGone()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        Fill(_mm, a, 1, seed: 1);
        ulong handle = AnonVmaHandle(a);
        Mm child = _mm.Fork();

        _mm.Munmap(a, Page);

        _memory.Mappings.Find(handle).Should().NotBeNull("the child's area is linked to it");
        Rmap.FindMappings(_memory, child.ReadPte(a).Pfn).Should().ContainSingle().Which.Mm.Should().BeSameAs(child);
        child.Exit();
        _memory.Mappings.Find(handle).Should().BeNull();
    }

    [Fact]
    public void UnmapOfNothingNotifiesNothing()
    {
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        _mm.Munmap(Base, Page);

        chain.Calls.Should().BeEmpty();
    }

    // ---- errors: each leaves everything as it was ----

    [Theory]
    [InlineData(Base + 1, Page)]
    [InlineData(Base + 0x800, Page)]
    [InlineData(Base, 0UL)]
    [InlineData(Mm.TaskSize - 0x1000, 0x2000UL)]
    [InlineData(Mm.TaskSize + 0x1000, 0x1000UL)]
    [InlineData(Base, ulong.MaxValue)]
    [InlineData(Base, Mm.TaskSize)]
    [InlineData(0UL, ulong.MaxValue - 0x800)]
    public void InvalidRangesFailWithEinvalAndChangeNothing(ulong address, ulong length)
    {
        MmSnapshot before = PopulatedSnapshot();

        ((Action)(() => _mm.Munmap(address, length))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
    }

    private ulong AnonVmaHandle(ulong address)
    {
        using MmapLockGuard guard = _mm.MmapReadLock();
        return _mm.FindVma(address)!.AnonVma!.Handle;
    }

    private MmSnapshot PopulatedSnapshot()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        ulong b = _mm.Mmap(Base + (8 * Page), 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, a, 4, seed: 1);
        Fill(_mm, b, 2, seed: 2);
        return MmSnapshot.Capture(_mm, (Base, Base + (12 * Page)));
    }
}
