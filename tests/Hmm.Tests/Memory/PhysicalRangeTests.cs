using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Memory;

public class PhysicalRangeTests
{
    private const ulong MiB = TestKit.MiB;

    [Fact]
    public void EndStartPfnAndPageCountFollowFromStartAndLength()
    {
        var range = new PhysicalRange(2 * MiB, 4 * MiB);

        range.Start.Should().Be(2 * MiB);
        range.Length.Should().Be(4 * MiB);
        range.End.Should().Be(6 * MiB);
        range.StartPfn.Should().Be(new Pfn(512));
        range.PageCount.Should().Be(1024);
    }

    [Fact]
    public void ContainsIncludesTheFirstFrameAndExcludesTheEnd()
    {
        var range = new PhysicalRange(2 * MiB, 2 * MiB);

        range.Contains(new Pfn(512)).Should().BeTrue();
        range.Contains(new Pfn(1023)).Should().BeTrue();
        range.Contains(new Pfn(1024)).Should().BeFalse();
        range.Contains(new Pfn(511)).Should().BeFalse();
    }

    [Fact]
    public void AdjacentRangesDoNotOverlap()
    {
        var left = new PhysicalRange(0, 2 * MiB);
        var right = new PhysicalRange(2 * MiB, 2 * MiB);

        left.Overlaps(right).Should().BeFalse();
        right.Overlaps(left).Should().BeFalse();
    }

    [Fact]
    public void RangesSharingOneByteOverlapBothWays()
    {
        var outer = new PhysicalRange(0, 8 * MiB);
        var inner = new PhysicalRange(2 * MiB, 2 * MiB);
        var straddling = new PhysicalRange((8 * MiB) - 1, 2 * MiB);

        outer.Overlaps(inner).Should().BeTrue();
        inner.Overlaps(outer).Should().BeTrue();
        outer.Overlaps(straddling).Should().BeTrue();
        straddling.Overlaps(outer).Should().BeTrue();
        outer.Overlaps(outer).Should().BeTrue();
    }

    [Fact]
    public void RangesAreEqualByValue()
    {
        new PhysicalRange(2 * MiB, 2 * MiB).Should().Be(new PhysicalRange(2 * MiB, 2 * MiB));
        new PhysicalRange(2 * MiB, 2 * MiB).Should().NotBe(new PhysicalRange(2 * MiB, 4 * MiB));
    }

    [Fact]
    public void ToStringPrintsAHalfOpenHexRange()
    {
        new PhysicalRange(2 * MiB, 2 * MiB).ToString().Should().Be("[0x200000-0x400000)");
    }
}
