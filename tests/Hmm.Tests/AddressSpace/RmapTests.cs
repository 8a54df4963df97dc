using FluentAssertions;
using Xunit;

namespace Hmm.Tests.AddressSpace;

public class RmapTests
{
    private const int Page = PageSize.Bytes;

    [Fact]
    public void FindsTheOnlyMappingOfAnAnonymousPage()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 4);
        mm.Write(a + (3 * Page), [1]);
        Pte pte = mm.ReadPte(a + (3 * Page));

        Rmap.FindMappings(memory, pte.Pfn).Should().Equal(new PageMapping(mm, a + (3 * Page), pte));
    }

    [Fact]
    public void FindsACopyOnWritePageInTheParentAndEveryDescendant()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory, "parent");
        ulong a = TestKit.MapAnonymous(parent, 2);
        parent.Write(a + Page, [1]);
        Pfn page = parent.ReadPte(a + Page).Pfn;
        Mm child = parent.Fork("child");
        Mm grandchild = child.Fork("grandchild");

        IReadOnlyList<PageMapping> found = Rmap.FindMappings(memory, page);

        found.Select(m => m.Mm).Should().BeEquivalentTo(new[] { parent, child, grandchild });
        found.Should().OnlyContain(m => m.Address == a + Page && m.Entry.Pfn == page && !m.Entry.IsWritable);
        memory.Page(page).MapCount.Should().Be(3);
    }

    [Fact]
    public void AfterACopyOnWriteBreakEachPageIsFoundOnlyWhereItIsMapped()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory, "parent");
        ulong a = TestKit.MapAnonymous(parent, 1);
        parent.Write(a, [1]);
        Pfn page = parent.ReadPte(a).Pfn;
        Mm child = parent.Fork("child");

        child.Write(a, [2]);

        Pfn copy = child.ReadPte(a).Pfn;
        Rmap.FindMappings(memory, page).Should().ContainSingle().Which.Mm.Should().BeSameAs(parent);
        Rmap.FindMappings(memory, copy).Should().ContainSingle().Which.Mm.Should().BeSameAs(child);
        child.Exit();
        Rmap.FindMappings(memory, page).Should().ContainSingle().Which.Mm.Should().BeSameAs(parent);
    }

    [Fact]
    public void FindsAFilePageInEveryProcessMappingIt()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", 4 * Page);
        var one = new Mm(memory, "one");
        var two = new Mm(memory, "two");
        var three = new Mm(memory, "three");
        ulong a = one.Mmap(0, 4 * Page, Protection.ReadWrite, MapFlags.Shared, file);
        ulong b = two.Mmap(0, 2 * Page, Protection.Read, MapFlags.Shared, file, offset: 2 * Page);
        ulong c = three.Mmap(0, 4 * Page, Protection.ReadWrite, MapFlags.Private, file);
        one.Write(a + (3 * Page), [1]);
        TestKit.ReadBytes(two, b + Page, 1).Should().Equal(1);
        TestKit.ReadBytes(three, c + (3 * Page), 1).Should().Equal(1);
        Pfn page = one.ReadPte(a + (3 * Page)).Pfn;

        IReadOnlyList<PageMapping> found = Rmap.FindMappings(memory, page);

        found.Select(m => (m.Mm, m.Address)).Should().BeEquivalentTo(new[] { (one, a + (3 * Page)), (two, b + Page), (three, c + (3 * Page)) });
        memory.Page(page).MapCount.Should().Be(3);

        // A private mapping that copied the page maps its own copy, no longer the file's page.
        three.Write(c + (3 * Page), [2]);
        Rmap.FindMappings(memory, page).Select(m => m.Mm).Should().BeEquivalentTo(new[] { one, two });
    }

    [Fact]
    public void FindsAPageAtItsNewAddressAfterMremapInAForkedChild()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory, "parent");
        ulong a = TestKit.MapAnonymous(parent, 2);
        parent.Write(a + Page, [1]);
        Pfn page = parent.ReadPte(a + Page).Pfn;
        Mm child = parent.Fork("child");

        ulong moved = child.Mremap(a, 2 * Page, 4 * Page, MremapFlags.MayMove | MremapFlags.Fixed, 0x5000_0000);

        moved.Should().Be(0x5000_0000UL);
        Rmap.FindMappings(memory, page).Select(m => (m.Mm, m.Address)).Should().BeEquivalentTo(new[] { (parent, a + Page), (child, moved + Page) });
        TestKit.ReadBytes(child, moved + Page, 1).Should().Equal(1);
    }

    [Fact]
    public void FindsNothingForAnUnmappedPageTheZeroPageOrAFreedPage()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        TestKit.ReadBytes(mm, a, 1);
        Pfn loose = memory.AllocatePage();

        Rmap.FindMappings(memory, loose).Should().BeEmpty();
        Rmap.FindMappings(memory, PhysicalMemory.ZeroPage).Should().BeEmpty();
        memory.PutPage(loose);
        Rmap.FindMappings(memory, loose).Should().BeEmpty();
    }

    [Fact]
    public void FindsNothingAfterMunmapWhileAReferenceKeepsThePage()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [1]);
        Pfn page = mm.ReadPte(a).Pfn;
        memory.GetPage(page);

        mm.Munmap(a, Page);

        Rmap.FindMappings(memory, page).Should().BeEmpty();
        memory.PutPage(page);
    }

    [Fact]
    public void FindMappingsOfAFrameWithoutStructPageIsEfault()
    {
        PhysicalMemory memory = TestKit.NewMemory();

        Action find = () => Rmap.FindMappings(memory, new Pfn(1UL << 30));

        find.Should().Throw<HmmException>().Where(e => e.Error == Errno.EFAULT);
    }

    [Fact]
    public void TryToUnmapRemovesEveryMappingAndTellsEachAddressSpace()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory, "parent");
        ulong a = TestKit.MapAnonymous(parent, 2);
        parent.Write(a + Page, [1]);
        Pfn page = parent.ReadPte(a + Page).Pfn;
        Mm child = parent.Fork("child");
        RecordingNotifierChain parentNotifiers = RecordingNotifierChain.InstallOn(parent);
        RecordingNotifierChain childNotifiers = RecordingNotifierChain.InstallOn(child);
        memory.GetPage(page);
        memory.LockPage(page);

        int removed = Rmap.TryToUnmap(memory, page);

        removed.Should().Be(2);
        memory.Page(page).MapCount.Should().Be(0);
        memory.PageRefCount(page).Should().Be(1, "only the caller's own reference is left");
        parent.ReadPte(a + Page).IsNone.Should().BeTrue();
        child.ReadPte(a + Page).IsNone.Should().BeTrue();
        Rmap.FindMappings(memory, page).Should().BeEmpty();
        var expected = new MmuNotifierRange(a + Page, a + (2 * Page), MmuNotifierEvent.Clear);
        parentNotifiers.Calls.Should().Equal(NotifierCall.Pair(expected.Start, expected.End, expected.Event));
        childNotifiers.Calls.Should().Equal(NotifierCall.Pair(expected.Start, expected.End, expected.Event));

        memory.UnlockPage(page);
        ulong free = memory.FreeRamPages;
        memory.PutPage(page);
        memory.FreeRamPages.Should().Be(free + 1);
    }

    [Fact]
    public void TryToUnmapOfAFilePageLeavesItInThePageCache()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", Page);
        var one = new Mm(memory, "one");
        var two = new Mm(memory, "two");
        ulong a = one.Mmap(0, Page, Protection.ReadWrite, MapFlags.Shared, file);
        ulong b = two.Mmap(0, Page, Protection.ReadWrite, MapFlags.Shared, file);
        one.Write(a, [6]);
        TestKit.ReadBytes(two, b, 1);
        Pfn page = one.ReadPte(a).Pfn;
        memory.GetPage(page);
        memory.LockPage(page);

        Rmap.TryToUnmap(memory, page).Should().Be(2);

        memory.UnlockPage(page);
        memory.PutPage(page);
        memory.Page(page).MapCount.Should().Be(0);
        memory.PageRefCount(page).Should().Be(1, "the page cache keeps its reference");
        file.CachedPages.Should().Be(1);
        TestKit.ReadBytes(two, b, 1).Should().Equal(6);
        two.ReadPte(b).Pfn.Should().Be(page, "the next fault maps the cached page again");
    }

    [Fact]
    public void FindsACopiedPageOfAPrivateFileMappingInParentAndChild()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", 2 * Page);
        var parent = new Mm(memory, "parent");
        ulong a = parent.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Private, file);
        parent.Write(a, [1]);
        Pfn copy = parent.ReadPte(a).Pfn;
        Mm child = parent.Fork("child");

        Rmap.FindMappings(memory, copy).Select(m => m.Mm).Should().BeEquivalentTo(new[] { parent, child });
        child.Exit();
    }

    [Fact]
    public void FindsAPageTheChildCopiesInAPrivateFileMappingAfterFork()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", 2 * Page);
        var parent = new Mm(memory, "parent");
        ulong a = parent.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Private, file);
        parent.Write(a, [1]);
        Mm child = parent.Fork("child");

        child.Write(a + Page, [2]);

        Pfn page = child.ReadPte(a + Page).Pfn;
        Rmap.FindMappings(memory, page).Should().ContainSingle().Which.Mm.Should().BeSameAs(child);
        child.Exit();
    }
}
