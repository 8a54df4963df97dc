using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

public class MmForkTests
{
    private const ulong Base = 0x4000_0000;

    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _parent;

    public MmForkTests()
    {
        _parent = new Mm(_memory, "parent");
    }

    [Fact]
    public void ChildGetsTheSameAreasAndIsAlive()
    {
        SimFile file = PatternFile(_memory, 2, seed: 3);
        _parent.MapAnonymousAt(Base, 2);
        _parent.Mprotect(Base + Page, Page, Protection.Read);
        _parent.Mmap(Base + (4 * Page), 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        _parent.Mmap(Base + (8 * Page), 2 * Page, Protection.Read, MapFlags.Private | MapFlags.FixedNoReplace, file, offset: 0);

        Mm child = _parent.Fork("kid");

        child.Name.Should().Be("kid");
        child.IsAlive.Should().BeTrue();
        child.Memory.Should().BeSameAs(_memory);
        child.AreaShapes().Should().Equal(_parent.AreaShapes());
        child.Areas().Should().OnlyContain(v => v.Mm == child);
        child.Areas().Select(v => v.File).Should().Equal(_parent.Areas().Select(v => v.File));
        child.Exit();
    }

    [Fact]
    public void PrivateMemoryIsSharedCopyOnWrite()
    {
        ulong a = _parent.MapAnonymousAt(Base, 2);
        Fill(_parent, a, 2, seed: 1);
        Pfn page = _parent.ReadPte(a).Pfn;
        ulong free = _memory.FreeRamPages;

        Mm child = _parent.Fork();

        _memory.FreeRamPages.Should().Be(free, "fork copies no page");
        _memory.Page(page).MapCount.Should().Be(2);
        _memory.Page(page).RefCount.Should().Be(2);
        _memory.Page(page).Flags.Should().NotHaveFlag(PageFlags.AnonExclusive);
        foreach (Mm mm in new[] { _parent, child })
        {
            Pte pte = mm.ReadPte(a);
            (pte.IsPresent, pte.IsWritable, pte.Pfn).Should().Be((true, false, page), $"{mm.Name} maps the page read-only");
        }

        child.ShouldHold(a, 2, seed: 1);
        Rmap.FindMappings(_memory, page).Select(m => (m.Mm.Name, m.Address)).Should().BeEquivalentTo(new[] { ("parent", a), ("child", a) });
        child.Exit();
    }

    [Fact]
    public void ParentWriteAfterForkIsNotSeenByTheChild()
    {
        ulong a = _parent.MapAnonymousAt(Base, 1);
        Fill(_parent, a, 1, seed: 1);
        Pfn page = _parent.ReadPte(a).Pfn;
        Mm child = _parent.Fork();
        ulong free = _memory.FreeRamPages;

        _parent.Write(a, [9]);

        _memory.FreeRamPages.Should().Be(free - 1, "the parent's write copied the page");
        _parent.ReadPte(a).Pfn.Should().NotBe(page);
        _parent.ReadPte(a).IsWritable.Should().BeTrue();
        child.ReadPte(a).Pfn.Should().Be(page);
        child.ShouldHold(a, 1, seed: 1);
        ReadBytes(_parent, a, 1).Should().Equal(9);
        ReadBytes(_parent, a + 1, Page - 1).Should().Equal(Pattern(a + 1, (int)Page - 1, seed: 1));
        _memory.Page(page).MapCount.Should().Be(1);
        child.Exit();
    }

    [Fact]
    public void AfterOneSideCopiedTheOtherReusesThePage()
    {
        ulong a = _parent.MapAnonymousAt(Base, 1);
        Fill(_parent, a, 1, seed: 1);
        Pfn page = _parent.ReadPte(a).Pfn;
        Mm child = _parent.Fork();
        child.Write(a, [1]);
        ulong free = _memory.FreeRamPages;

        _parent.Write(a, [2]);

        _parent.ReadPte(a).Pfn.Should().Be(page, "the parent is now the page's only user");
        _memory.FreeRamPages.Should().Be(free);
        ReadBytes(child, a, 1).Should().Equal(1);
        ReadBytes(_parent, a, 1).Should().Equal(2);
        child.Exit();
    }

    [Fact]
    public void ThePageIsFreedWhenBothMappingsAreGone()
    {
        ulong free = _memory.FreeRamPages;
        ulong a = _parent.MapAnonymousAt(Base, 3);
        Fill(_parent, a, 3, seed: 1);
        Pfn page = _parent.ReadPte(a).Pfn;
        Mm child = _parent.Fork();

        _parent.Munmap(a, 3 * Page);

        _memory.Page(page).RefCount.Should().Be(1);
        _memory.Page(page).MapCount.Should().Be(1);
        child.ShouldHold(a, 3, seed: 1);
        Rmap.FindMappings(_memory, page).Should().ContainSingle().Which.Mm.Should().BeSameAs(child);

        child.Exit();

        _memory.FreeRamPages.Should().Be(free);
        _memory.Page(page).RefCount.Should().Be(0);
    }

    [Fact]
    public void ChildOfAnExitedParentKeepsItsMemory()
    {
        ulong free = _memory.FreeRamPages;
        ulong a = _parent.MapAnonymousAt(Base, 2);
        Fill(_parent, a, 2, seed: 1);
        Mm child = _parent.Fork();

        _parent.Exit();

        child.ShouldHold(a, 2, seed: 1);
        child.Write(a, [5]);
        child.ReadPte(a).IsWritable.Should().BeTrue();
        child.Exit();
        _memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void UntouchedAndZeroPageMemoryForksAsZeros()
    {
        ulong a = _parent.MapAnonymousAt(Base, 2);
        _parent.ShouldReadZeros(a, 1);

        Mm child = _parent.Fork();

        child.ReadPte(a).Pfn.Should().Be(PhysicalMemory.ZeroPage);
        child.ReadPte(a + Page).IsNone.Should().BeTrue();
        child.ShouldReadZeros(a, 2);
        child.Write(a, [1]);
        _parent.ShouldReadZeros(a, 2);
        child.Exit();
    }

    [Fact]
    public void GrandchildSharesThePageWithBothAncestors()
    {
        ulong a = _parent.MapAnonymousAt(Base, 1);
        Fill(_parent, a, 1, seed: 1);
        Pfn page = _parent.ReadPte(a).Pfn;
        Mm child = _parent.Fork("child");
        Mm grandchild = child.Fork("grandchild");

        _memory.Page(page).MapCount.Should().Be(3);
        Rmap.FindMappings(_memory, page).Select(m => m.Mm.Name).Should().BeEquivalentTo("parent", "child", "grandchild");

        grandchild.Write(a, [3]);
        child.Write(a, [2]);

        _parent.ShouldHold(a, 1, seed: 1);
        ReadBytes(child, a, 1).Should().Equal(2);
        ReadBytes(grandchild, a, 1).Should().Equal(3);
        _memory.Page(page).MapCount.Should().Be(1);
        Rmap.FindMappings(_memory, child.ReadPte(a).Pfn).Should().ContainSingle().Which.Mm.Should().BeSameAs(child);
        grandchild.Exit();
        child.Exit();
    }

    [Fact]
    public void SharedFileMappingIsSharedWithTheChild()
    {
        SimFile file = PatternFile(_memory, 2, seed: 3);
        ulong a = _parent.Mmap(Base, 2 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.FixedNoReplace, file);
        _parent.Write(a, [1]);

        Mm child = _parent.Fork();

        child.ReadPte(a).IsNone.Should().BeTrue("shared areas are refaulted, not copied");
        _parent.ReadPte(a).IsWritable.Should().BeTrue("shared entries are not write-protected");
        child.Write(a + Page, [2]);
        ReadBytes(_parent, a + Page, 1).Should().Equal(2);
        ReadBytes(child, a, 1).Should().Equal(1);
        child.Exit();
    }

    [Fact]
    public void PrivateFileMappingCopiesAreCopyOnWriteAfterFork()
    {
        SimFile file = PatternFile(_memory, 2, seed: 3);
        ulong a = _parent.Mmap(Base, 2 * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.FixedNoReplace, file);
        Fill(_parent, a, 1, seed: 4);
        Pfn copy = _parent.ReadPte(a).Pfn;
        _parent.ShouldHoldFrom(a + Page, 1, Page, seed: 3);
        Pfn cached = _parent.ReadPte(a + Page).Pfn;

        Mm child = _parent.Fork();

        Rmap.FindMappings(_memory, copy).Select(m => m.Mm.Name).Should().BeEquivalentTo("parent", "child");
        Rmap.FindMappings(_memory, cached).Select(m => m.Mm.Name).Should().BeEquivalentTo("parent", "child");
        child.Write(a, [7]);
        child.Write(a + Page, [8]);

        _parent.ShouldHold(a, 1, seed: 4);
        _parent.ShouldHoldFrom(a + Page, 1, Page, seed: 3);
        ReadBytes(child, a, 1).Should().Equal(7);
        ReadBytes(child, a + Page, 1).Should().Equal(8);
        Rmap.FindMappings(_memory, child.ReadPte(a + Page).Pfn).Should().ContainSingle().Which.Mm.Should().BeSameAs(child);
        var fromFile = new byte[1];
        file.Read(Page, fromFile);
        fromFile[0].Should().Be(PatternByte(Page, 3));
        child.Exit();
    }

    [Fact]
    public void ForkKeepsProtectionsAndTheChildCannotWriteReadOnlyMemory()
    {
        ulong a = _parent.MapAnonymousAt(Base, 1);
        Fill(_parent, a, 1, seed: 1);
        _parent.Mprotect(a, Page, Protection.Read);

        Mm child = _parent.Fork();

        ((Action)(() => child.Write(a, [1]))).ShouldSegfault();
        child.ShouldHold(a, 1, seed: 1);
        child.Exit();
    }

    [Fact]
    public void ForkNotifiesTheParentOfAPerPageProtectionChangeOnPrivateAreas()
    {
        ulong a = _parent.MapAnonymousAt(Base, 2);
        _parent.Mmap(Base + (4 * Page), Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        ulong c = _parent.MapAnonymousAt(Base + (8 * Page), 3);
        Fill(_parent, a, 2, seed: 1);
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_parent);

        Mm child = _parent.Fork();

        chain.Starts.Should().Equal(
            (a, a + (2 * Page), MmuNotifierEvent.ProtectionPage),
            (c, c + (3 * Page), MmuNotifierEvent.ProtectionPage));
        chain.ShouldBeBalanced();
        child.Notifiers.Should().BeNull("the child starts without subscriptions");
        child.Exit();
    }

    [Fact]
    public void ChildAndParentExitLeaveNothingBehind()
    {
        ulong free = _memory.FreeRamPages;
        ulong a = _parent.MapAnonymousAt(Base, 4);
        Fill(_parent, a, 4, seed: 1);
        Mm child = _parent.Fork();
        child.Write(a, [1]);
        _parent.Write(a + Page, [2]);
        _memory.FreeRamPages.Should().BeLessThan(free);

        child.Exit();
        _parent.Exit();

        _memory.FreeRamPages.Should().Be(free);
        _parent.PageTable.PteTableCount.Should().Be(0);
        child.PageTable.PteTableCount.Should().Be(0);
    }

    [Fact]
    public void ForkAfterExitFailsWithEsrch()
    {
        _parent.MapAnonymousAt(Base, 1);
        _parent.Exit();
        ulong free = _memory.FreeRamPages;

        ((Action)(() => _parent.Fork())).ShouldFailWith(Errno.ESRCH);

        _memory.FreeRamPages.Should().Be(free);
    }
}
