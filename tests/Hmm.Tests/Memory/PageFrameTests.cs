using System.Runtime.CompilerServices;
using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Memory;

public class PageFrameTests
{
    [Fact]
    public void PageFrameFitsTheKernelStructPageBudgetOfSixtyFourBytes()
    {
        Unsafe.SizeOf<PageFrame>().Should().BeLessThanOrEqualTo(64);
    }

    [Fact]
    public void DefaultFrameIsFreeUnlockedAndOwnedByNoPagemap()
    {
        var frame = default(PageFrame);

        frame.RefCount.Should().Be(0);
        frame.MapCount.Should().Be(0);
        frame.Flags.Should().Be(PageFlags.None);
        frame.IsLocked.Should().BeFalse();
        frame.IsZoneDevice.Should().BeFalse();
        frame.PagemapId.Should().Be(0);
    }

    [Fact]
    public void FrameReadsTheLockAndZoneDeviceBitsFromItsFlags()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();

        memory.LockPage(pfn);

        memory.Page(pfn).IsLocked.Should().BeTrue();
        memory.Page(pfn).Flags.Should().Be(PageFlags.Locked);
        memory.Page(pfn).IsZoneDevice.Should().BeFalse();
        memory.UnlockPage(pfn);
        memory.Page(pfn).IsLocked.Should().BeFalse();
    }
}
