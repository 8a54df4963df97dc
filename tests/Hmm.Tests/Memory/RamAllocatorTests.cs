using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Memory;

public class RamAllocatorTests
{
    [Fact]
    public void AllocatesEveryFrameOfItsRangeOnceThenRunsOut()
    {
        var allocator = new RamAllocator(firstPfn: 1, endPfn: 9);
        var seen = new HashSet<Pfn>();

        for (int i = 0; i < 8; i++)
        {
            allocator.TryAllocate(out Pfn pfn).Should().BeTrue();
            seen.Add(pfn).Should().BeTrue($"{pfn} was handed out twice");
        }

        seen.Should().OnlyContain(p => p.Value >= 1 && p.Value < 9);
        allocator.FreePages.Should().Be(0);
        allocator.TryAllocate(out Pfn none).Should().BeFalse();
        none.Should().Be(default(Pfn));
        allocator.TotalPages.Should().Be(8);
    }

    [Fact]
    public void FreedFramesComeBackLastInFirstOut()
    {
        var allocator = new RamAllocator(firstPfn: 1, endPfn: 100);
        allocator.TryAllocate(out Pfn a);
        allocator.TryAllocate(out Pfn b);

        allocator.Free(a);
        allocator.Free(b);

        allocator.TryAllocate(out Pfn first);
        allocator.TryAllocate(out Pfn second);
        first.Should().Be(b);
        second.Should().Be(a);
    }

    [Fact]
    public void FreeingMoreFramesThanTheInitialStackHoldsKeepsThemAll()
    {
        var allocator = new RamAllocator(firstPfn: 1, endPfn: 201);
        var pfns = new List<Pfn>();
        while (allocator.TryAllocate(out Pfn pfn))
        {
            pfns.Add(pfn);
        }

        foreach (Pfn pfn in pfns)
        {
            allocator.Free(pfn);
        }

        allocator.FreePages.Should().Be(200);
        var again = new HashSet<Pfn>();
        while (allocator.TryAllocate(out Pfn pfn))
        {
            again.Add(pfn);
        }

        again.Order().Should().Equal(pfns.Order());
    }
}
