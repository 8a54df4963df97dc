using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Memory;

public partial class PhysicalMemoryTests
{
    private const ulong MiB = TestKit.MiB;

    [Theory]
    [InlineData(0UL)]
    [InlineData(3UL * MiB)]
    [InlineData((2UL * MiB) + 4096)]
    [InlineData((1UL << 46) + (2UL * MiB))]
    public void ConstructorRejectsARamSizeThatIsZeroUnalignedOrTooLargeWithEINVAL(ulong ramBytes)
    {
        Action create = () => _ = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = ramBytes });

        create.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
    }

    [Fact]
    public void DefaultMemoryHasTwoHundredFiftySixMiBOfRamThatStoresData()
    {
        var memory = new PhysicalMemory();

        memory.RamBytes.Should().Be(256 * MiB);
        memory.StoresPageData.Should().BeTrue();
        memory.RamPages.Should().Be((256 * MiB / 4096) - 2, "frame 0 is reserved and frame 1 is the zero page");
    }

    [Fact]
    public void RamIsPresentAndOnlyRamIsPresentAtStart()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        ulong ramFrames = 4 * MiB / 4096;

        memory.IsPresent(new Pfn(0)).Should().BeTrue();
        memory.IsPresent(new Pfn(ramFrames - 1)).Should().BeTrue();
        memory.IsPresent(new Pfn(ramFrames)).Should().BeFalse("the rest of RAM's section is a hole");
        memory.IsPresent(Pfn.FromPhysicalAddress(TestKit.DeviceBase)).Should().BeFalse();
        memory.IsPresent(new Pfn(Pfn.Limit)).Should().BeFalse();
        memory.IsPresent(new Pfn(ulong.MaxValue)).Should().BeFalse();
        memory.Resources().Should().ContainSingle()
            .Which.Should().Be(new IoResource(PhysicalMemory.SystemRamResourceName, new PhysicalRange(0, 4 * MiB)));
    }

    [Fact]
    public void FrameZeroAndTheZeroPageAreReservedAndNotCountedAsRam()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);

        memory.RamPages.Should().Be((4 * MiB / 4096) - 2);
        memory.FreeRamPages.Should().Be(memory.RamPages);
        memory.Page(new Pfn(0)).Flags.Should().HaveFlag(PageFlags.Reserved);
        memory.Page(new Pfn(0)).RefCount.Should().Be(0);
        memory.Page(PhysicalMemory.ZeroPage).Flags.Should().HaveFlag(PageFlags.Reserved);
        memory.Page(PhysicalMemory.ZeroPage).RefCount.Should().Be(1, "the zero page is never freed");
        memory.ReadPageData(PhysicalMemory.ZeroPage).ToArray().Should().OnlyContain(b => b == 0);
    }

    [Fact]
    public void AllocatePageReturnsAnUnlockedPageWithOneReference()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        ulong free = memory.FreeRamPages;

        Pfn pfn = memory.AllocatePage();

        ref readonly PageFrame page = ref memory.Page(pfn);
        page.RefCount.Should().Be(1);
        page.MapCount.Should().Be(0);
        page.Flags.Should().Be(PageFlags.None);
        page.PagemapId.Should().Be(0);
        memory.PageRefCount(pfn).Should().Be(1);
        memory.IsPageLocked(pfn).Should().BeFalse();
        memory.FreeRamPages.Should().Be(free - 1);
    }

    [Fact]
    public void AllocatedPagesAreDistinctRamFramesAndNeverFrameZero()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 2);
        var seen = new HashSet<Pfn>();

        for (ulong i = 0; i < memory.RamPages; i++)
        {
            Pfn pfn = memory.AllocatePage();
            seen.Add(pfn).Should().BeTrue($"{pfn} was handed out twice");
        }

        seen.Should().HaveCount((int)memory.RamPages);
        seen.Should().NotContain(new Pfn(0));
        seen.Should().OnlyContain(p => p.PhysicalAddress < memory.RamBytes);
        memory.FreeRamPages.Should().Be(0);
    }

    [Fact]
    public void ExhaustedRamMakesAllocatePageThrowENOMEMAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 2);
        var pfns = new List<Pfn>();
        while (memory.TryAllocatePage(out Pfn pfn))
        {
            pfns.Add(pfn);
        }

        MemorySnapshot before = MemorySnapshot.Take(memory, pfns);

        Action allocate = () => memory.AllocatePage();

        allocate.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        MemorySnapshot.Take(memory, pfns).Should().Be(before);
    }

    [Fact]
    public void ExhaustedRamMakesTryAllocatePageReturnFalseAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 2);
        var pfns = new List<Pfn>();
        while (memory.TryAllocatePage(out Pfn pfn))
        {
            pfns.Add(pfn);
        }

        MemorySnapshot before = MemorySnapshot.Take(memory, pfns);

        memory.TryAllocatePage(out Pfn none).Should().BeFalse();

        none.Should().Be(default(Pfn));
        MemorySnapshot.Take(memory, pfns).Should().Be(before);
        memory.PutPage(pfns[0]);
        memory.AllocatePage().Should().Be(pfns[0], "a freed page makes allocation possible again");
    }

    [Fact]
    public void PageDataIsOnePageOfZeroesAtFirst()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();

        Span<byte> data = memory.PageData(pfn);

        data.Length.Should().Be(PageSize.Bytes).And.Be(4096);
        data.ToArray().Should().OnlyContain(b => b == 0);
    }

    [Fact]
    public void PageDataWritesPersistAndStayInTheirOwnPage()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn a = memory.AllocatePage();
        Pfn b = memory.AllocatePage();

        memory.PageData(a).Fill(0xA5);
        memory.PageData(b)[0] = 0x5A;
        memory.PageData(b)[4095] = 0x7E;

        memory.PageData(a).ToArray().Should().OnlyContain(x => x == 0xA5);
        memory.PageData(b)[0].Should().Be(0x5A);
        memory.PageData(b)[4095].Should().Be(0x7E);
        memory.PageData(b)[1..4095].ToArray().Should().OnlyContain(x => x == 0);
        memory.PageData(a + 2).ToArray().Should().OnlyContain(x => x == 0, "a neighbour's data is untouched");
    }

    [Fact]
    public void PageDataInMetadataOnlyModeThrowsEOPNOTSUPPAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4, storePageData: false);
        Pfn pfn = memory.AllocatePage();
        MemorySnapshot before = MemorySnapshot.Take(memory, pfn);

        Action read = () => memory.PageData(pfn);

        memory.StoresPageData.Should().BeFalse();
        read.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EOPNOTSUPP);
        MemorySnapshot.Take(memory, pfn).Should().Be(before);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void PageAndPageDataOfAnAbsentFrameThrowEFAULT(bool storePageData)
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4, storePageData);
        Pfn[] absent = [new Pfn(4 * MiB / 4096), Pfn.FromPhysicalAddress(TestKit.DeviceBase), new Pfn(Pfn.Limit), new Pfn(ulong.MaxValue)];
        MemorySnapshot before = MemorySnapshot.Take(memory, absent);

        foreach (Pfn pfn in absent)
        {
            Action page = () => _ = memory.Page(pfn).RefCount;
            Action data = () => memory.PageData(pfn);
            Action refCount = () => memory.PageRefCount(pfn);

            page.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
            data.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
            refCount.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
        }

        MemorySnapshot.Take(memory, absent).Should().Be(before);
    }

    [Fact]
    public void SetZoneDeviceDataOnARamPageThrowsEINVALAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        MemorySnapshot before = MemorySnapshot.Take(memory, pfn);

        Action set = () => memory.SetZoneDeviceData(pfn, 42);

        set.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        memory.Page(pfn).ZoneDeviceData.Should().Be(0);
        MemorySnapshot.Take(memory, pfn).Should().Be(before);
    }
}
