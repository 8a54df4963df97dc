using FluentAssertions;
using Xunit;

namespace Hmm.Tests.AddressSpace;

public class MmGupTests
{
    private const int Page = PageSize.Bytes;

    [Fact]
    public void GetUserPagesFaultsPagesInAndTakesOneReferenceEach()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 3);
        mm.Write(a + Page, [1]);
        Pfn written = mm.ReadPte(a + Page).Pfn;
        int zeroRefs = memory.PageRefCount(PhysicalMemory.ZeroPage);
        var pages = new Pfn[3];

        mm.GetUserPages(a, GupFlags.None, pages).Should().Be(3);

        pages[1].Should().Be(written);
        memory.PageRefCount(written).Should().Be(2);
        memory.Page(written).MapCount.Should().Be(1, "GUP references do not map");
        pages[0].Should().Be(PhysicalMemory.ZeroPage, "a read GUP of untouched memory faults the zero page in");
        pages[2].Should().Be(PhysicalMemory.ZeroPage);
        mm.ReadPte(a).Pfn.Should().Be(PhysicalMemory.ZeroPage);
        foreach (Pfn pfn in pages)
        {
            memory.PutPage(pfn);
        }

        memory.PageRefCount(written).Should().Be(1);
        memory.PageRefCount(PhysicalMemory.ZeroPage).Should().Be(zeroRefs);
    }

    [Fact]
    public void GetUserPagesForWritingAllocatesWritablePagesTheProcessSees()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 2);
        TestKit.ReadBytes(mm, a, 1);
        var pages = new Pfn[2];

        mm.GetUserPages(a, GupFlags.Write, pages).Should().Be(2);

        for (int i = 0; i < 2; i++)
        {
            pages[i].Should().NotBe(PhysicalMemory.ZeroPage);
            Pte pte = mm.ReadPte(a + ((ulong)i * Page));
            pte.Pfn.Should().Be(pages[i]);
            pte.IsWritable.Should().BeTrue();
            memory.PageRefCount(pages[i]).Should().Be(2);
        }

        memory.PageData(pages[1])[5] = 0x5A;
        TestKit.ReadBytes(mm, a + Page + 5, 1).Should().Equal(0x5A);
        memory.PutPage(pages[0]);
        memory.PutPage(pages[1]);
    }

    [Fact]
    public void GetUserPagesForWritingBreaksCopyOnWriteFirst()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory);
        ulong a = TestKit.MapAnonymous(parent, 1);
        parent.Write(a, [1, 2, 3]);
        Pfn shared = parent.ReadPte(a).Pfn;
        Mm child = parent.Fork();
        var pages = new Pfn[1];

        parent.GetUserPages(a, GupFlags.Write, pages).Should().Be(1);

        pages[0].Should().NotBe(shared, "the parent's private copy is returned, not the page the child still maps");
        parent.ReadPte(a).Pfn.Should().Be(pages[0]);
        parent.ReadPte(a).IsWritable.Should().BeTrue();
        child.ReadPte(a).Pfn.Should().Be(shared);
        memory.PageData(pages[0])[0] = 9;
        TestKit.ReadBytes(parent, a, 3).Should().Equal(9, 2, 3);
        TestKit.ReadBytes(child, a, 3).Should().Equal(1, 2, 3);
        memory.PutPage(pages[0]);
    }

    [Fact]
    public void GetUserPagesReturnsAShortCountWhenALaterPageIsUnmapped()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 3);
        mm.Write(a, new byte[3 * Page]);
        mm.Munmap(a + Page, Page);
        Pfn first = mm.ReadPte(a).Pfn;
        Pfn third = mm.ReadPte(a + (2 * Page)).Pfn;
        var pages = new Pfn[3];

        mm.GetUserPages(a, GupFlags.None, pages).Should().Be(1);

        pages[0].Should().Be(first);
        pages[1].Should().Be(default(Pfn));
        memory.PageRefCount(first).Should().Be(2);
        memory.PageRefCount(third).Should().Be(1, "nothing past the hole is taken");
        memory.PutPage(first);
    }

    [Fact]
    public void GetUserPagesForWritingStopsAtAReadOnlyPage()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 3);
        mm.Mprotect(a + (2 * Page), Page, Protection.Read);
        var pages = new Pfn[3];

        mm.GetUserPages(a, GupFlags.Write, pages).Should().Be(2);

        mm.ReadPte(a + (2 * Page)).IsNone.Should().BeTrue();
        memory.PutPage(pages[0]);
        memory.PutPage(pages[1]);
    }

    [Fact]
    public void GetUserPagesReturnsAShortCountWhenALaterPageCannotBeAllocated()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 3);
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation, skip: 1);
        var pages = new Pfn[3];

        mm.GetUserPages(a, GupFlags.Write, pages).Should().Be(1);

        mm.ReadPte(a + Page).IsNone.Should().BeTrue();
        memory.PutPage(pages[0]);
    }

    [Fact]
    public void GetUserPagesOfAnUnmappedFirstPageIsEfaultAndTakesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 2);
        mm.Write(a + Page, [1]);
        mm.Munmap(a, Page);
        Pfn second = mm.ReadPte(a + Page).Pfn;
        ulong free = memory.FreeRamPages;

        Action gup = () => mm.GetUserPages(a, GupFlags.None, new Pfn[2]);

        gup.Should().Throw<HmmException>().Where(e => e.Error == Errno.EFAULT);
        memory.PageRefCount(second).Should().Be(1);
        memory.FreeRamPages.Should().Be(free);
        mm.ReadPte(a).IsNone.Should().BeTrue();
    }

    [Fact]
    public void GetUserPagesForWritingOfAReadOnlyPageIsEfaultAndTakesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [1]);
        Pte before = mm.ReadPte(a);
        mm.Mprotect(a, Page, Protection.Read);
        Pte readOnly = mm.ReadPte(a);

        Action gup = () => mm.GetUserPages(a, GupFlags.Write, new Pfn[1]);
        Action pin = () => mm.PinUserPages(a, GupFlags.Write | GupFlags.LongTerm, new Pfn[1]);

        gup.Should().Throw<HmmException>().Where(e => e.Error == Errno.EFAULT);
        pin.Should().Throw<HmmException>().Where(e => e.Error == Errno.EFAULT);
        memory.PageRefCount(before.Pfn).Should().Be(1);
        mm.ReadPte(a).Should().Be(readOnly);
    }

    [Fact]
    public void GetUserPagesOfProtNoneIsEfault()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1, Protection.None);

        Action gup = () => mm.GetUserPages(a, GupFlags.None, new Pfn[1]);

        gup.Should().Throw<HmmException>().Where(e => e.Error == Errno.EFAULT);
        mm.ReadPte(a).IsNone.Should().BeTrue();
    }

    [Theory]
    [InlineData(VmFlags.Io)]
    [InlineData(VmFlags.PfnMap)]
    public void GetUserPagesOfAnIoOrPfnMapAreaIsEfaultAndTakesNothing(VmFlags kind)
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [1]);
        Pfn page = mm.ReadPte(a).Pfn;
        using (mm.MmapWriteLock())
        {
            Vma vma = mm.FindVma(a)!;
            vma.Flags |= kind;
        }

        Action gup = () => mm.GetUserPages(a, GupFlags.None, new Pfn[1]);
        Action pin = () => mm.PinUserPages(a, GupFlags.None, new Pfn[1]);

        gup.Should().Throw<HmmException>().Where(e => e.Error == Errno.EFAULT);
        pin.Should().Throw<HmmException>().Where(e => e.Error == Errno.EFAULT);
        memory.PageRefCount(page).Should().Be(1);
    }

    [Fact]
    public void GetUserPagesBeyondTheEndOfAFileIsEfault()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", 10);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, 2 * Page, Protection.Read, MapFlags.Shared, file);
        var pages = new Pfn[2];

        mm.GetUserPages(a, GupFlags.None, pages).Should().Be(1, "the first page is in the file, the second is not");
        Action beyond = () => mm.GetUserPages(a + Page, GupFlags.None, new Pfn[1]);

        beyond.Should().Throw<HmmException>().Where(e => e.Error == Errno.EFAULT);
        memory.PageRefCount(pages[0]).Should().Be(3, "page cache, mapping and GUP");
        memory.PutPage(pages[0]);
    }

    [Fact]
    public void GetUserPagesOutOfMemoryOnTheFirstPageIsEnomemAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 2);
        ulong free = memory.FreeRamPages;
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation);

        Action gup = () => mm.GetUserPages(a, GupFlags.Write, new Pfn[2]);

        gup.Should().Throw<HmmException>().Where(e => e.Error == Errno.ENOMEM);
        mm.ReadPte(a).IsNone.Should().BeTrue();
        memory.FreeRamPages.Should().Be(free);
    }

    [Theory]
    [InlineData(0x4000_0001UL, 1)]
    [InlineData(0x4000_0800UL, 1)]
    [InlineData(Mm.TaskSize, 1)]
    [InlineData(Mm.TaskSize - Page, 2)]
    public void GetUserPagesOfAnUnalignedOrOutOfRangeStartIsEinval(ulong start, int count)
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        mm.Mmap(0x4000_0000, Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);

        Action gup = () => mm.GetUserPages(start, GupFlags.None, new Pfn[count]);
        Action pin = () => mm.PinUserPages(start, GupFlags.None, new Pfn[count]);

        gup.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL);
        pin.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL);
        mm.ReadPte(0x4000_0000).IsNone.Should().BeTrue();
    }

    [Fact]
    public void GetUserPagesOfNoPagesReturnsZero()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);

        mm.GetUserPages(0x4000_0000, GupFlags.None, Span<Pfn>.Empty).Should().Be(0);
    }

    [Fact]
    public void GetUserPagesAfterExitIsEsrch()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Exit();

        Action gup = () => mm.GetUserPages(a, GupFlags.None, new Pfn[1]);

        gup.Should().Throw<HmmException>().Where(e => e.Error == Errno.ESRCH);
    }

    [Fact]
    public void GetUserPagesWorksOnMetadataOnlyMemory()
    {
        PhysicalMemory memory = TestKit.NewMemory(storePageData: false);
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 2);
        var pages = new Pfn[2];

        mm.GetUserPages(a, GupFlags.Write, pages).Should().Be(2);

        memory.PageRefCount(pages[0]).Should().Be(2);
        memory.PutPage(pages[0]);
        memory.PutPage(pages[1]);
    }

    [Fact]
    public void AGupReferenceKeepsThePageAliveAfterMunmap()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [7]);
        var pages = new Pfn[1];
        mm.GetUserPages(a, GupFlags.None, pages);
        ulong free = memory.FreeRamPages;

        mm.Munmap(a, Page);

        memory.PageRefCount(pages[0]).Should().Be(1);
        memory.Page(pages[0]).MapCount.Should().Be(0);
        memory.PageData(pages[0])[0].Should().Be(7);
        memory.FreeRamPages.Should().Be(free);
        memory.PutPage(pages[0]);
        memory.FreeRamPages.Should().Be(free + 1);
    }

    [Fact]
    public void PinUserPagesAddsThePinBiasUntilUnpinned()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 2);
        var pages = new Pfn[2];

        mm.PinUserPages(a, GupFlags.Write | GupFlags.LongTerm, pages).Should().Be(2);

        foreach (Pfn pfn in pages)
        {
            memory.PageRefCount(pfn).Should().Be(1 + Mm.PinCountingBias);
            Mm.MaybeDmaPinned(memory, pfn).Should().BeTrue();
        }

        mm.UnpinUserPages(pages);
        foreach (Pfn pfn in pages)
        {
            memory.PageRefCount(pfn).Should().Be(1);
            Mm.MaybeDmaPinned(memory, pfn).Should().BeFalse();
        }
    }

    [Fact]
    public void AGetReferenceIsNotAPin()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        var pages = new Pfn[1];
        mm.GetUserPages(a, GupFlags.Write, pages);

        Mm.MaybeDmaPinned(memory, pages[0]).Should().BeFalse();
        memory.PutPage(pages[0]);
    }

    [Fact]
    public void UnpinOfAPageThatIsNotPinnedIsAKernelBugAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [1]);
        Pfn page = mm.ReadPte(a).Pfn;

        Action unpin = () => mm.UnpinUserPages([page]);

        unpin.Should().Throw<KernelBugException>();
        memory.PageRefCount(page).Should().Be(1);
        memory.Page(page).MapCount.Should().Be(1);
        TestKit.ReadBytes(mm, a, 1).Should().Equal(1);
    }

    [Fact]
    public void UnpinTwiceIsAKernelBugTheSecondTime()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        var pages = new Pfn[1];
        mm.PinUserPages(a, GupFlags.Write, pages);
        mm.UnpinUserPages(pages);

        Action again = () => mm.UnpinUserPages(pages);

        again.Should().Throw<KernelBugException>();
        memory.PageRefCount(pages[0]).Should().Be(1);
    }

    [Fact]
    public void AReadOnlyPinOfACopyOnWriteSharedPageFollowsTheProcessWrites()
    {
        // The kernel unshares an anonymous page that is not exclusive before a read-only pin (gup_must_unshare,
        // FAULT_FLAG_UNSHARE), so the pinned page is the one the process keeps writing to.
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory);
        ulong a = TestKit.MapAnonymous(parent, 1);
        parent.Write(a, [1]);
        Mm child = parent.Fork();
        var pages = new Pfn[1];

        parent.PinUserPages(a, GupFlags.None, pages).Should().Be(1);
        parent.Write(a, [2]);

        parent.ReadPte(a).Pfn.Should().Be(pages[0]);
        memory.PageData(pages[0])[0].Should().Be(2);
        TestKit.ReadBytes(child, a, 1).Should().Equal(1);
        parent.UnpinUserPages(pages);
    }

    [Fact]
    public void AReadOnlyLongTermPinOfAPrivateFilePageBreaksCopyOnWriteEarly()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", Page);
        file.Write(0, [4]);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, Page, Protection.ReadWrite, MapFlags.Private, file);
        TestKit.ReadBytes(mm, a, 1);
        Pfn cached = mm.ReadPte(a).Pfn;
        var pages = new Pfn[1];

        mm.PinUserPages(a, GupFlags.LongTerm, pages).Should().Be(1);
        mm.Write(a, [5]);

        pages[0].Should().NotBe(cached);
        mm.ReadPte(a).Pfn.Should().Be(pages[0]);
        memory.PageData(pages[0])[0].Should().Be(5);
        Mm.MaybeDmaPinned(memory, cached).Should().BeFalse();
        mm.UnpinUserPages(pages);
    }

    [Fact]
    public void AShortTermReadOnlyPinOfAPrivateFilePageDoesNotCopyIt()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", Page);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, Page, Protection.ReadWrite, MapFlags.Private, file);
        TestKit.ReadBytes(mm, a, 1);
        Pfn cached = mm.ReadPte(a).Pfn;
        var pages = new Pfn[1];

        mm.PinUserPages(a, GupFlags.None, pages).Should().Be(1);

        pages[0].Should().Be(cached);
        mm.UnpinUserPages(pages);
    }

    [Fact]
    public void ForkCopiesAPinnedPageForTheChildSoTheParentKeepsThePinnedPage()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory);
        ulong a = TestKit.MapAnonymous(parent, 1);
        parent.Write(a, [1]);
        var pages = new Pfn[1];
        parent.PinUserPages(a, GupFlags.Write | GupFlags.LongTerm, pages);

        Mm child = parent.Fork();
        parent.Write(a, [2]);

        parent.ReadPte(a).Pfn.Should().Be(pages[0], "the kernel's fork copies a possibly pinned exclusive page (page_needs_cow_for_dma)");
        memory.PageData(pages[0])[0].Should().Be(2);
        child.ReadPte(a).Pfn.Should().NotBe(pages[0]);
        TestKit.ReadBytes(child, a, 1).Should().Equal(1);
        parent.UnpinUserPages(pages);
        child.Exit();
    }

    [Fact]
    public void ForkThatCannotCopyAPinnedPageFailsWithEnomemAndLeavesTheParentIntact()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory);
        ulong a = TestKit.MapAnonymous(parent, 2);
        parent.Write(a, [1]);
        parent.Write(a + Page, [2]);
        var pages = new Pfn[1];
        parent.PinUserPages(a + Page, GupFlags.Write | GupFlags.LongTerm, pages);
        ulong free = memory.FreeRamPages;
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation);

        Action fork = () => parent.Fork();

        fork.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        memory.FreeRamPages.Should().Be(free, "the half-built child is torn down");
        memory.Page(parent.ReadPte(a).Pfn).MapCount.Should().Be(1, "the child's share of the first page is gone");
        parent.ReadPte(a + Page).Pfn.Should().Be(pages[0]);
        parent.Write(a, [3]);
        TestKit.ReadBytes(parent, a, 1).Should().Equal(3);
        TestKit.ReadBytes(parent, a + Page, 1).Should().Equal(2);
        parent.UnpinUserPages(pages);
    }
}
