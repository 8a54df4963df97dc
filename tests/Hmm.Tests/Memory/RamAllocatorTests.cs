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

    [Fact]
    public void FreeingManyAtOnceComesBackInTheOrderOfFreeingOneByOne()
    {
        var batched = new RamAllocator(firstPfn: 1, endPfn: 301);
        var single = new RamAllocator(firstPfn: 1, endPfn: 301);
        var pfns = new ulong[300];
        for (int i = 0; i < pfns.Length; i++)
        {
            batched.TryAllocate(out Pfn pfn);
            single.TryAllocate(out _);
            pfns[i] = pfn.Value;
        }

        // Freed in a scrambled order, more than the initial stack holds, in two batches.
        new Random(7).Shuffle(pfns);
        batched.FreeMany(pfns.AsSpan(0, 100));
        batched.FreeMany(pfns.AsSpan(100));
        foreach (ulong pfn in pfns)
        {
            single.Free(new Pfn(pfn));
        }

        batched.FreePages.Should().Be(300);
        for (int i = 0; i < pfns.Length; i++)
        {
            batched.TryAllocate(out Pfn fromBatch).Should().BeTrue();
            single.TryAllocate(out Pfn fromSingle);
            fromBatch.Should().Be(fromSingle, $"allocation {i} must not depend on how the frames were freed (seed 7)");
        }
    }

    [Fact]
    public void FreeingManyWithAFrameOutsideTheRangeIsABugAndFreesNone()
    {
        var allocator = new RamAllocator(firstPfn: 10, endPfn: 20);
        allocator.TryAllocate(out Pfn a);
        allocator.TryAllocate(out Pfn b);

        Action act = () => allocator.FreeMany([a.Value, 20, b.Value]);

        act.Should().Throw<KernelBugException>();
        allocator.FreePages.Should().Be(8);
    }
}
