using FluentAssertions;
using Xunit;

namespace Hmm.Tests.AddressSpace;

public class VmaTreeTests
{
    private const ulong Page = PageSize.Bytes;

    private readonly Mm _mm = new(new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 2UL << 20, StorePageData = false }));
    private readonly VmaTree _tree = new();

    [Fact]
    public void EmptyTreeFindsNothing()
    {
        _tree.Count.Should().Be(0);
        _tree.Find(0x1000).Should().BeNull();
        _tree.FirstEndingAfter(0x1000).Should().Be(0);
        _tree.Overlaps(0, ulong.MaxValue).Should().BeFalse();
        _tree.Covers(0x1000, 0x2000).Should().BeFalse();
        _tree.Overlapping(0, ulong.MaxValue).Should().BeEmpty();
        _tree.Snapshot().Should().BeEmpty();
    }

    [Fact]
    public void InsertKeepsAddressOrderWhateverTheInsertionOrder()
    {
        Vma c = Insert(20, 30);
        Vma a = Insert(0, 5);
        Vma b = Insert(10, 20);
        Vma d = Insert(5, 10);

        _tree.Snapshot().Should().Equal(a, d, b, c);
        _tree.Count.Should().Be(4);
        _tree[0].Should().BeSameAs(a);
        _tree[3].Should().BeSameAs(c);
    }

    [Fact]
    public void FindReturnsTheAreaContainingTheAddress()
    {
        Vma a = Insert(10, 12);
        Vma b = Insert(12, 15);
        Insert(20, 21);

        _tree.Find(At(10)).Should().BeSameAs(a);
        _tree.Find(At(12) - 1).Should().BeSameAs(a);
        _tree.Find(At(12)).Should().BeSameAs(b, "an area's end belongs to the next one");
        _tree.Find(At(15) - 1).Should().BeSameAs(b);
        _tree.Find(At(15)).Should().BeNull();
        _tree.Find(At(10) - 1).Should().BeNull();
        _tree.Find(At(21)).Should().BeNull();
        _tree.Find(ulong.MaxValue).Should().BeNull();
    }

    [Fact]
    public void FirstEndingAfterIsTheKernelsFindVma()
    {
        Insert(10, 12);
        Insert(20, 30);

        _tree.FirstEndingAfter(0).Should().Be(0);
        _tree.FirstEndingAfter(At(11)).Should().Be(0);
        _tree.FirstEndingAfter(At(12)).Should().Be(1, "the first area ends at or below the address");
        _tree.FirstEndingAfter(At(15)).Should().Be(1);
        _tree.FirstEndingAfter(At(30)).Should().Be(2);
    }

    [Fact]
    public void OverlapsDetectsAnyIntersectionButNotAdjacency()
    {
        Insert(10, 12);
        Insert(20, 30);

        _tree.Overlaps(At(12), At(20)).Should().BeFalse();
        _tree.Overlaps(At(0), At(10)).Should().BeFalse();
        _tree.Overlaps(At(30), At(40)).Should().BeFalse();
        _tree.Overlaps(At(11), At(13)).Should().BeTrue();
        _tree.Overlaps(At(19), At(21)).Should().BeTrue();
        _tree.Overlaps(At(0), At(100)).Should().BeTrue();
        _tree.Overlaps(At(25), At(26)).Should().BeTrue();
    }

    [Fact]
    public void CoversRequiresTheRangeToBeMappedWithoutHoles()
    {
        Insert(10, 12);
        Insert(12, 15);
        Insert(16, 20);

        _tree.Covers(At(10), At(15)).Should().BeTrue("adjacent areas cover without a hole");
        _tree.Covers(At(11), At(13)).Should().BeTrue();
        _tree.Covers(At(16), At(20)).Should().BeTrue();
        _tree.Covers(At(10), At(16)).Should().BeFalse();
        _tree.Covers(At(14), At(17)).Should().BeFalse();
        _tree.Covers(At(9), At(11)).Should().BeFalse();
        _tree.Covers(At(19), At(21)).Should().BeFalse();
        _tree.Covers(At(30), At(31)).Should().BeFalse();
        _tree.Covers(At(11), At(11)).Should().BeTrue("an empty range is trivially covered");
    }

    [Fact]
    public void OverlappingListsTheIntersectingAreasInOrder()
    {
        Vma a = Insert(10, 12);
        Vma b = Insert(12, 15);
        Vma c = Insert(16, 20);

        _tree.Overlapping(At(11), At(17)).Should().Equal(a, b, c);
        _tree.Overlapping(At(12), At(16)).Should().Equal(b);
        _tree.Overlapping(At(15), At(16)).Should().BeEmpty();
        _tree.Overlapping(At(0), At(10)).Should().BeEmpty();
    }

    [Fact]
    public void RemoveTakesOutOnlyThatArea()
    {
        Vma a = Insert(10, 12);
        Vma b = Insert(12, 15);
        Vma c = Insert(16, 20);

        _tree.Remove(b);

        _tree.Snapshot().Should().Equal(a, c);
        _tree.Find(At(13)).Should().BeNull();
        _tree.Covers(At(10), At(15)).Should().BeFalse();
    }

    [Fact]
    public void SnapshotsAndOverlapListsAreCopies()
    {
        Vma a = Insert(10, 12);
        Vma[] snapshot = _tree.Snapshot();
        List<Vma> overlapping = _tree.Overlapping(0, ulong.MaxValue);

        Insert(20, 21);
        _tree.Remove(a);

        snapshot.Should().Equal(a);
        overlapping.Should().Equal(a);
    }

    [Fact]
    public void AnAreaInTheTreeReflectsItsNewBoundsAfterASplit()
    {
        Vma a = Insert(10, 20);
        Vma high = a.CloneRange(_mm, At(15), a.End);
        a.End = At(15);
        _tree.Insert(high);

        _tree.Snapshot().Should().Equal(a, high);
        high.PgOff.Should().Be(a.PgOff + 5);
        _tree.Find(At(15)).Should().BeSameAs(high);
        _tree.Find(At(14)).Should().BeSameAs(a);
    }

    private static ulong At(ulong page) => 0x4000_0000 + (page * Page);

    private Vma Insert(ulong firstPage, ulong endPage)
    {
        var vma = new Vma(_mm, At(firstPage), At(endPage), VmFlags.Read, null, At(firstPage) >> PageSize.Shift, null);
        _tree.Insert(vma);
        return vma;
    }
}
