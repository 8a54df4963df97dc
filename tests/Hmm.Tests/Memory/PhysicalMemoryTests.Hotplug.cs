using FluentAssertions;
using Hmm.Tests.DeviceMemory;
using Xunit;

namespace Hmm.Tests.Memory;

public partial class PhysicalMemoryTests
{
    private const ulong Top = 1UL << Pfn.MaxPhysicalAddressBits;

    [Fact]
    public void RequestFreeRegionClaimsSectionAlignedRegionsFromTheTopDown()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);

        PhysicalRange first = memory.RequestFreeRegion(2 * MiB, "gpu0");
        PhysicalRange second = memory.RequestFreeRegion(4 * MiB, "gpu1");
        PhysicalRange large = memory.RequestFreeRegion(3 * TestKit.SectionBytes, "gpu2");

        first.Should().Be(new PhysicalRange(Top - TestKit.SectionBytes, 2 * MiB));
        second.Should().Be(new PhysicalRange(first.Start - TestKit.SectionBytes, 4 * MiB));
        large.Length.Should().Be(3 * TestKit.SectionBytes);
        large.End.Should().BeLessThanOrEqualTo(second.Start);
        foreach (PhysicalRange range in new[] { first, second, large })
        {
            (range.Start % TestKit.SectionBytes).Should().Be(0);
            range.End.Should().BeLessThanOrEqualTo(Top);
            range.Overlaps(new PhysicalRange(0, memory.RamBytes)).Should().BeFalse();
        }

        first.Overlaps(second).Should().BeFalse();
        second.Overlaps(large).Should().BeFalse();
        memory.Resources().Should().Equal(
            new IoResource(PhysicalMemory.SystemRamResourceName, new PhysicalRange(0, memory.RamBytes)),
            new IoResource("gpu0", first),
            new IoResource("gpu1", second),
            new IoResource("gpu2", large));
    }

    [Fact]
    public void RequestFreeRegionSkipsDeviceMemoryThatIsOnlineWithoutAClaim()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        var driver = new TestDriver();
        var unclaimed = new PhysicalRange(Top - TestKit.SectionBytes, 2 * MiB);
        Memremap.Map(memory, driver.PrivateOptions(unclaimed));

        PhysicalRange region = memory.RequestFreeRegion(2 * MiB, "gpu0");

        region.Overlaps(unclaimed).Should().BeFalse("the region must be free, and online device pages are not");
        (region.Start % TestKit.SectionBytes).Should().Be(0);
        region.End.Should().BeLessThanOrEqualTo(unclaimed.Start);
        Memremap.Map(memory, driver.PrivateOptions(region)).State.Should().Be(DevPagemapState.Live);
    }

    [Fact]
    public void RequestFreeRegionDoesNotOnlineMemory()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);

        PhysicalRange region = memory.RequestFreeRegion(2 * MiB, "gpu0");

        memory.IsPresent(region.StartPfn).Should().BeFalse();
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(1UL * MiB)]
    [InlineData((2UL * MiB) + 4096)]
    [InlineData((1UL << 46) + (2UL * MiB))]
    public void RequestFreeRegionRejectsABadLengthWithEINVALAndClaimsNothing(ulong length)
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        memory.RequestFreeRegion(2 * MiB, "gpu0");
        MemorySnapshot before = MemorySnapshot.Take(memory);

        Action request = () => memory.RequestFreeRegion(length, "gpu1");

        request.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        MemorySnapshot.Take(memory).Should().Be(before);
    }

    [Fact]
    public void RequestFreeRegionThatCannotFitThrowsENOMEMAndClaimsNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        memory.RequestFreeRegion(2 * MiB, "gpu0");
        MemorySnapshot before = MemorySnapshot.Take(memory);

        Action whole = () => memory.RequestFreeRegion(Top, "gpu1");
        Action almostWhole = () => memory.RequestFreeRegion(Top - TestKit.SectionBytes, "gpu1");

        whole.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        almostWhole.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        MemorySnapshot.Take(memory).Should().Be(before);
    }

    [Fact]
    public void RequestFreeRegionRejectsANullName()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);

        Action request = () => memory.RequestFreeRegion(2 * MiB, null!);

        request.Should().Throw<ArgumentNullException>();
        memory.Resources().Should().ContainSingle();
    }

    [Fact]
    public void ReleaseRegionGivesTheRegionBack()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        PhysicalRange region = memory.RequestFreeRegion(2 * MiB, "gpu0");

        memory.ReleaseRegion(region);

        memory.Resources().Should().ContainSingle().Which.Name.Should().Be(PhysicalMemory.SystemRamResourceName);
        memory.RequestFreeRegion(2 * MiB, "gpu1").Should().Be(region, "the search is deterministic");
    }

    [Fact]
    public void ReleaseRegionOfAnUnknownRangeThrowsEINVALAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        PhysicalRange region = memory.RequestFreeRegion(4 * MiB, "gpu0");
        MemorySnapshot before = MemorySnapshot.Take(memory);

        Action unknown = () => memory.ReleaseRegion(TestKit.DeviceRange(0));
        Action partOfAClaim = () => memory.ReleaseRegion(new PhysicalRange(region.Start, 2 * MiB));
        Action systemRam = () => memory.ReleaseRegion(new PhysicalRange(0, memory.RamBytes));

        unknown.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        partOfAClaim.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        systemRam.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        MemorySnapshot.Take(memory).Should().Be(before);
    }

    [Fact]
    public async Task ReleaseRegionThrowsEBUSYWhileAPagemapIsOnlineInIt()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        var driver = new TestDriver();
        PhysicalRange region = memory.RequestFreeRegion(4 * MiB, "gpu0");
        DevPagemap pagemap = Memremap.Map(memory, driver.PrivateOptions(new PhysicalRange(region.Start + (2 * MiB), 2 * MiB)));
        MemorySnapshot before = MemorySnapshot.Take(memory, TestKit.Probes(region));

        Action release = () => memory.ReleaseRegion(region);

        release.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EBUSY);
        MemorySnapshot.Take(memory, TestKit.Probes(region)).Should().Be(before);
        pagemap.State.Should().Be(DevPagemapState.Live);

        await Memremap.UnmapAsync(pagemap).WaitAsync(TestKit.Timeout);
        memory.ReleaseRegion(region);
        memory.Resources().Should().ContainSingle();
    }
}
