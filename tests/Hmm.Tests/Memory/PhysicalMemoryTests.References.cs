using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Memory;

public partial class PhysicalMemoryTests
{
    [Fact]
    public void GetPageAndPutPageCountReferences()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        ulong free = memory.FreeRamPages;

        memory.GetPage(pfn);
        memory.GetPage(pfn);
        memory.PageRefCount(pfn).Should().Be(3);
        memory.PutPage(pfn);
        memory.PutPage(pfn);

        memory.PageRefCount(pfn).Should().Be(1);
        memory.FreeRamPages.Should().Be(free, "the page is not free while a reference remains");
    }

    [Fact]
    public void PutPageOfTheLastReferenceFreesTheRamPage()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        ulong free = memory.FreeRamPages;

        memory.PutPage(pfn);

        memory.PageRefCount(pfn).Should().Be(0);
        memory.FreeRamPages.Should().Be(free + 1);
        memory.IsPresent(pfn).Should().BeTrue("a free RAM frame still has its struct page");
    }

    [Fact]
    public void FreedRamPagesAreReusedLastInFirstOut()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn a = memory.AllocatePage();
        Pfn b = memory.AllocatePage();
        memory.AllocatePage();

        memory.PutPage(a);
        memory.PutPage(b);

        memory.AllocatePage().Should().Be(b);
        memory.AllocatePage().Should().Be(a);
    }

    [Fact]
    public void PutPageBelowZeroThrowsKernelBugAndLeavesThePageFree()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        memory.PutPage(pfn);
        MemorySnapshot before = MemorySnapshot.Take(memory, pfn);

        Action put = () => memory.PutPage(pfn);

        put.Should().Throw<KernelBugException>();
        memory.PageRefCount(pfn).Should().Be(0);
        MemorySnapshot.Take(memory, pfn).Should().Be(before, "the page must not be freed a second time");
        memory.AllocatePage().Should().Be(pfn);
        memory.AllocatePage().Should().NotBe(pfn, "a double free would hand the page out twice");
    }

    [Fact]
    public void PutPageOnReservedFrameZeroThrowsKernelBug()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        MemorySnapshot before = MemorySnapshot.Take(memory, new Pfn(0));

        Action put = () => memory.PutPage(new Pfn(0));

        put.Should().Throw<KernelBugException>();
        MemorySnapshot.Take(memory, new Pfn(0)).Should().Be(before);
    }

    [Fact]
    public void PuttingTheLastReferenceOfALockedRamPageThrowsKernelBugAndKeepsThePage()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        memory.LockPage(pfn);
        MemorySnapshot before = MemorySnapshot.Take(memory, pfn);

        Action put = () => memory.PutPage(pfn);

        put.Should().Throw<KernelBugException>();
        MemorySnapshot.Take(memory, pfn).Should().Be(before);
        memory.PageRefCount(pfn).Should().Be(1);
        memory.IsPageLocked(pfn).Should().BeTrue();
    }

    [Fact]
    public void GetPageOnAFreePageThrowsKernelBugAndLeavesItFree()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        memory.PutPage(pfn);
        MemorySnapshot before = MemorySnapshot.Take(memory, pfn);

        Action get = () => memory.GetPage(pfn);

        get.Should().Throw<KernelBugException>();
        memory.PageRefCount(pfn).Should().Be(0);
        MemorySnapshot.Take(memory, pfn).Should().Be(before);
    }

    [Fact]
    public void TryGetPageTakesAReferenceOnlyOnAPageInUse()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn used = memory.AllocatePage();
        Pfn free = memory.AllocatePage();
        memory.PutPage(free);
        MemorySnapshot before = MemorySnapshot.Take(memory, free);

        memory.TryGetPage(used).Should().BeTrue();
        memory.TryGetPage(free).Should().BeFalse();

        memory.PageRefCount(used).Should().Be(2);
        MemorySnapshot.Take(memory, free).Should().Be(before);
    }

    [Fact]
    public void ReferenceCallsOnAnAbsentFrameThrowEFAULT()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn absent = Pfn.FromPhysicalAddress(TestKit.DeviceBase);

        Action get = () => memory.GetPage(absent);
        Action tryGet = () => memory.TryGetPage(absent);
        Action put = () => memory.PutPage(absent);

        get.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
        tryGet.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
        put.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
    }
}
