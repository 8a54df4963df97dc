using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Memory;

public class PfnTests
{
    [Fact]
    public void FromPhysicalAddressDropsTheOffsetInsideThePage()
    {
        Pfn pfn = Pfn.FromPhysicalAddress(0x1234_5678);

        pfn.Value.Should().Be(0x12345);
        pfn.PhysicalAddress.Should().Be(0x1234_5000);
        Pfn.FromPhysicalAddress(0x1234_5000).Should().Be(pfn);
        Pfn.FromPhysicalAddress(0x1234_5FFF).Should().Be(pfn);
    }

    [Fact]
    public void LimitCoversTheFortySixBitPhysicalAddressSpace()
    {
        Pfn.Limit.Should().Be(1UL << (Pfn.MaxPhysicalAddressBits - PageSize.Shift));
        new Pfn(Pfn.Limit).PhysicalAddress.Should().Be(1UL << 46);
    }

    [Fact]
    public void AddingFramesAdvancesTheFrameNumber()
    {
        var pfn = new Pfn(10);

        (pfn + 5).Should().Be(new Pfn(15));
        pfn.Add(5).Should().Be(new Pfn(15));
        pfn.Value.Should().Be(10, "a Pfn is an immutable value");
    }

    [Fact]
    public void FramesCompareByNumber()
    {
        var low = new Pfn(3);
        var high = new Pfn(7);

        (low < high).Should().BeTrue();
        (high > low).Should().BeTrue();
        (low <= new Pfn(3)).Should().BeTrue();
        (high >= new Pfn(7)).Should().BeTrue();
        (high < low).Should().BeFalse();
        low.CompareTo(high).Should().BeNegative();
        high.CompareTo(low).Should().BePositive();
        low.CompareTo(new Pfn(3)).Should().Be(0);
        low.Should().Be(new Pfn(3));
        low.Should().NotBe(high);
    }

    [Fact]
    public void ToStringPrintsTheFrameAsTheKernelDoes()
    {
        new Pfn(0x1a2b).ToString().Should().Be("pfn 0x1a2b");
        default(Pfn).ToString().Should().Be("pfn 0x0");
    }
}
