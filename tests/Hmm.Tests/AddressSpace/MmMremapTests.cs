using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

public class MmMremapTests
{
    private const ulong Base = 0x4000_0000;
    private const ulong Target = 0x6000_0000;
    private const MremapFlags MoveTo = MremapFlags.MayMove | MremapFlags.Fixed;

    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _mm;

    public MmMremapTests()
    {
        _mm = new Mm(_memory);
    }

    [Fact]
    public void ShrinkUnmapsTheTailAndFreesItsPages()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        ulong free = _memory.FreeRamPages;

        _mm.Mremap(a, 4 * Page, 2 * Page, MremapFlags.None).Should().Be(a);

        _mm.Areas().Select(v => (v.Start, v.End)).Should().Equal((a, a + (2 * Page)));
        _memory.FreeRamPages.Should().Be(free + 2);
        _mm.ShouldHold(a, 2, seed: 1);
        ((Action)(() => _mm.Read(a + (2 * Page), new byte[1]))).ShouldSegfault();
    }

    [Fact]
    public void ShrinkOfARangeInsideAnAreaLeavesAHole()
    {
        ulong a = _mm.MapAnonymousAt(Base, 6);
        Fill(_mm, a, 6, seed: 1);

        _mm.Mremap(a + Page, 3 * Page, Page, MremapFlags.MayMove).Should().Be(a + Page);

        ulong pgoff = a >> PageSize.Shift;
        _mm.Areas().Select(v => (v.Start, v.End, v.PgOff)).Should().Equal((a, a + (2 * Page), pgoff), (a + (4 * Page), a + (6 * Page), pgoff + 4));
        _mm.ShouldHold(a, 2, seed: 1);
        _mm.ShouldHold(a + (4 * Page), 2, seed: 1);
    }

    [Fact]
    public void SameSizeWithoutMoveChangesNothing()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        MmSnapshot before = MmSnapshot.Capture(_mm);
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        _mm.Mremap(a, 2 * Page, 2 * Page, MremapFlags.MayMove).Should().Be(a);

        before.ShouldBeUnchanged();
        chain.Calls.Should().BeEmpty();
    }

    [Fact]
    public void SameSizeOfPartOfAnAreaChangesNothing()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        MmSnapshot before = MmSnapshot.Capture(_mm);
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        _mm.Mremap(a + Page, 2 * Page, 2 * Page, MremapFlags.None).Should().Be(a + Page);

        before.ShouldBeUnchanged();
        chain.Calls.Should().BeEmpty();
    }

    [Fact]
    public void GrowInPlaceWhenTheFollowingPagesAreFree()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        Pfn first = _mm.ReadPte(a).Pfn;
        ulong free = _memory.FreeRamPages;
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        _mm.Mremap(a, 2 * Page, 5 * Page, MremapFlags.None).Should().Be(a);

        _mm.AreaShapes().Should().Equal((a, a + (5 * Page), VmFlags.Read | VmFlags.Write | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec, a >> PageSize.Shift));
        _memory.FreeRamPages.Should().Be(free);
        _mm.ReadPte(a).Pfn.Should().Be(first);
        chain.Calls.Should().BeEmpty("nothing mapped changes");
        _mm.ShouldHold(a, 2, seed: 1);
        _mm.ShouldReadZeros(a + (2 * Page), 3);
        Fill(_mm, a + (4 * Page), 1, seed: 2);
    }

    [Fact]
    public void GrowWithMayMoveWhenBlockedMovesTheMappingAndItsPages()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        ulong blocker = _mm.MapAnonymousAt(Base + (2 * Page), 1);
        Fill(_mm, a, 2, seed: 1);
        Pfn first = _mm.ReadPte(a).Pfn;
        Pfn second = _mm.ReadPte(a + Page).Pfn;
        ulong free = _memory.FreeRamPages;

        ulong moved = _mm.Mremap(a, 2 * Page, 4 * Page, MremapFlags.MayMove);

        moved.Should().Be(Mm.TaskSize - (4 * Page), "the new place is found top-down");
        _mm.Areas().Select(v => (v.Start, v.End, v.PgOff)).Should().Equal(
            (blocker, blocker + Page, blocker >> PageSize.Shift),
            (moved, moved + (4 * Page), a >> PageSize.Shift));
        _memory.FreeRamPages.Should().Be(free, "the pages move, they are not copied");
        _mm.ReadPte(a).IsNone.Should().BeTrue();
        _mm.ReadPte(moved).Pfn.Should().Be(first);
        _mm.ReadPte(moved + Page).Pfn.Should().Be(second);
        _memory.Page(first).MapCount.Should().Be(1);
        _memory.Page(first).RefCount.Should().Be(1);
        Rmap.FindMappings(_memory, first).Should().ContainSingle().Which.Address.Should().Be(moved);
        Rmap.FindMappings(_memory, second).Should().ContainSingle().Which.Address.Should().Be(moved + Page);
        _mm.ShouldHoldFrom(moved, 2, a, seed: 1);
        _mm.ShouldReadZeros(moved + (2 * Page), 2);
        ((Action)(() => _mm.Read(a, new byte[1]))).ShouldSegfault();
    }

    [Fact]
    public void MoveOfAnAreaWithoutPageTablesMovesOnlyTheArea()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);

        _mm.Mremap(a, 2 * Page, 2 * Page, MoveTo, Target).Should().Be(Target);

        _mm.Areas().Single().Start.Should().Be(Target);
        _mm.PageTable.PteTableCount.Should().Be(0);
    }

    [Fact]
    public void FixedMovesToTheAddressReplacingWhatWasThere()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        ulong t = _mm.MapAnonymousAt(Target - Page, 4);
        Fill(_mm, a, 2, seed: 1);
        Fill(_mm, t, 4, seed: 2);
        ulong free = _memory.FreeRamPages;

        _mm.Mremap(a, 2 * Page, 2 * Page, MoveTo, Target).Should().Be(Target);

        _memory.FreeRamPages.Should().Be(free + 2, "the two pages the move replaced are freed");
        _mm.Areas().Select(v => (v.Start, v.End)).Should().Equal((t, Target), (Target, Target + (2 * Page)), (Target + (2 * Page), Target + (3 * Page)));
        _mm.ShouldHold(t, 1, seed: 2);
        _mm.ShouldHoldFrom(Target, 2, a, seed: 1);
        _mm.ShouldHold(Target + (2 * Page), 1, seed: 2);
        _mm.PageTable.Find(a).Should().BeNull("the emptied source table is freed");
    }

    [Fact]
    public void FixedWithASmallerSizeMovesTheHeadAndFreesTheRest()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        ulong free = _memory.FreeRamPages;

        _mm.Mremap(a, 4 * Page, 2 * Page, MoveTo, Target).Should().Be(Target);

        _mm.Areas().Select(v => (v.Start, v.End)).Should().Equal((Target, Target + (2 * Page)));
        _memory.FreeRamPages.Should().Be(free + 2);
        _mm.ShouldHoldFrom(Target, 2, a, seed: 1);
    }

    [Fact]
    public void FixedWithALargerSizeMovesAndGrows()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);

        _mm.Mremap(a, 2 * Page, 3 * Page, MoveTo, Target).Should().Be(Target);

        _mm.Areas().Select(v => (v.Start, v.End)).Should().Equal((Target, Target + (3 * Page)));
        _mm.ShouldHoldFrom(Target, 2, a, seed: 1);
        _mm.ShouldReadZeros(Target + (2 * Page), 1);
    }

    [Fact]
    public void MoveOfPartOfAnAreaSplitsIt()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);

        _mm.Mremap(a + Page, 2 * Page, 2 * Page, MoveTo, Target).Should().Be(Target);

        ulong pgoff = a >> PageSize.Shift;
        _mm.Areas().Select(v => (v.Start, v.End, v.PgOff)).Should().Equal(
            (a, a + Page, pgoff),
            (a + (3 * Page), a + (4 * Page), pgoff + 3),
            (Target, Target + (2 * Page), pgoff + 1));
        _mm.ShouldHold(a, 1, seed: 1);
        _mm.ShouldHold(a + (3 * Page), 1, seed: 1);
        _mm.ShouldHoldFrom(Target, 2, a + Page, seed: 1);
        Rmap.FindMappings(_memory, _mm.ReadPte(Target + Page).Pfn).Should().ContainSingle().Which.Address.Should().Be(Target + Page);
    }

    [Fact]
    public void MoveWithinTheSameAreaSplitsItAroundTheTarget()
    {
        ulong a = _mm.MapAnonymousAt(Base, 10);
        Fill(_mm, a, 10, seed: 1);
        ulong free = _memory.FreeRamPages;

        _mm.Mremap(a, 2 * Page, 2 * Page, MoveTo, a + (5 * Page)).Should().Be(a + (5 * Page));

        ulong pgoff = a >> PageSize.Shift;
        _mm.Areas().Select(v => (v.Start, v.End, v.PgOff)).Should().Equal(
            (a + (2 * Page), a + (5 * Page), pgoff + 2),
            (a + (5 * Page), a + (7 * Page), pgoff),
            (a + (7 * Page), a + (10 * Page), pgoff + 7));
        _memory.FreeRamPages.Should().Be(free + 2, "the two target pages were replaced");
        _mm.ShouldHoldFrom(a + (5 * Page), 2, a, seed: 1);
        _mm.ShouldHold(a + (2 * Page), 3, seed: 1);
        _mm.ShouldHold(a + (7 * Page), 3, seed: 1);
    }

    [Fact]
    public void MoveAllocatesPageTablesOnlyWhereEntriesMove()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 1, seed: 1);
        const ulong Straddling = Target + (2UL << 20) - (2 * Page);

        _mm.Mremap(a, 4 * Page, 4 * Page, MoveTo, Straddling).Should().Be(Straddling);

        _mm.PageTable.PteTableCount.Should().Be(1, "only the first page held an entry");
        _mm.ShouldHoldFrom(Straddling, 1, a, seed: 1);
    }

    [Fact]
    public void DontUnmapLeavesTheOldRangeMappedAndEmpty()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        Pfn first = _mm.ReadPte(a).Pfn;
        ulong free = _memory.FreeRamPages;

        ulong moved = _mm.Mremap(a, 2 * Page, 2 * Page, MremapFlags.MayMove | MremapFlags.DontUnmap);

        moved.Should().NotBe(a);
        _mm.Areas().Select(v => (v.Start, v.End)).Should().Equal((a, a + (2 * Page)), (moved, moved + (2 * Page)));
        _memory.FreeRamPages.Should().Be(free);
        _mm.ReadPte(a).IsNone.Should().BeTrue();
        _mm.ReadPte(moved).Pfn.Should().Be(first);
        Rmap.FindMappings(_memory, first).Should().ContainSingle().Which.Address.Should().Be(moved);
        _mm.ShouldHoldFrom(moved, 2, a, seed: 1);
        _mm.ShouldReadZeros(a, 2);

        Fill(_mm, a, 1, seed: 2);
        _mm.ShouldHold(a, 1, seed: 2);
        _mm.ShouldHoldFrom(moved, 1, a, seed: 1);
        Rmap.FindMappings(_memory, _mm.ReadPte(a).Pfn).Should().ContainSingle().Which.Address.Should().Be(a);
    }

    [Fact]
    public void DontUnmapWithFixedMovesToTheAddress()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        Fill(_mm, a, 1, seed: 1);

        _mm.Mremap(a, Page, Page, MoveTo | MremapFlags.DontUnmap, Target).Should().Be(Target);

        _mm.ShouldHoldFrom(Target, 1, a, seed: 1);
        _mm.ShouldReadZeros(a, 1);
    }

    [Fact]
    public void DontUnmapOfAPrivateFileMappingRefaultsTheFileInTheOldRange()
    {
        SimFile file = PatternFile(_memory, 2, seed: 3);
        ulong a = _mm.Mmap(Base, 2 * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.FixedNoReplace, file);
        Fill(_mm, a, 1, seed: 4);

        _mm.Mremap(a, 2 * Page, 2 * Page, MoveTo | MremapFlags.DontUnmap, Target).Should().Be(Target);

        ReadBytes(_mm, Target, Page).Should().Equal(Pattern(a, (int)Page, seed: 4));
        _mm.ShouldHoldFrom(Target + Page, 1, Page, seed: 3);
        _mm.ShouldHoldFrom(a, 2, 0, seed: 3);
        _mm.Areas().Select(v => v.PgOff).Should().Equal(0UL, 0UL);
    }

    [Fact]
    public void MoveOfASharedFileMappingKeepsItsPgOffAndItsSharing()
    {
        SimFile file = PatternFile(_memory, 4, seed: 3);
        ulong a = _mm.Mmap(Base, 2 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.FixedNoReplace, file, offset: 2 * Page);
        _mm.Write(a, [1]);

        _mm.Mremap(a, 2 * Page, 2 * Page, MoveTo, Target).Should().Be(Target);
        _mm.Write(Target + Page, [2]);

        _mm.Areas().Single().PgOff.Should().Be(2);
        var b = new byte[1];
        file.Read(2 * Page, b);
        b[0].Should().Be(1);
        file.Read(3 * Page, b);
        b[0].Should().Be(2);
        Rmap.FindMappings(_memory, _mm.ReadPte(Target).Pfn).Should().ContainSingle().Which.Address.Should().Be(Target);
    }

    [Fact]
    public void MoveOfCopyOnWriteMemoryAfterForkKeepsItShared()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        Fill(_mm, a, 1, seed: 1);
        Pfn page = _mm.ReadPte(a).Pfn;
        Mm child = _mm.Fork();

        child.Mremap(a, Page, Page, MoveTo, Target).Should().Be(Target);

        child.ReadPte(Target).Pfn.Should().Be(page);
        child.ReadPte(Target).IsWritable.Should().BeFalse();
        _memory.Page(page).MapCount.Should().Be(2);
        Rmap.FindMappings(_memory, page).Select(m => (m.Mm.Name, m.Address)).Should().BeEquivalentTo(new[] { (_mm.Name, a), (child.Name, Target) });

        child.Write(Target, [9]);
        _mm.ShouldHold(a, 1, seed: 1);
        ReadBytes(child, Target, 1).Should().Equal(9);
        _memory.Page(page).MapCount.Should().Be(1);
        child.Exit();
    }

    [Fact]
    public void GrowingSharedAnonymousMemoryRaisesBusErrorsBeyondItsOriginalSize()
    {
        ulong a = _mm.Mmap(Base, 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, a, 2, seed: 1);

        _mm.Mremap(a, 2 * Page, 3 * Page, MremapFlags.None).Should().Be(a);

        _mm.ShouldHold(a, 2, seed: 1);
        ((Action)(() => _mm.Read(a + (2 * Page), new byte[1]))).ShouldSegfault().IsBusError.Should().BeTrue("the shmem object keeps its size, as in the kernel");
    }

    [Fact]
    public void ZeroOldSizeDuplicatesASharedMapping()
    {
        ulong a = _mm.Mmap(Base, 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, a, 2, seed: 1);

        ulong copy = _mm.Mremap(a + Page, 0, Page, MremapFlags.MayMove);

        _mm.Areas().Should().HaveCount(2);
        _mm.ShouldHoldFrom(copy, 1, a + Page, seed: 1);
        _mm.Write(copy, [7]);
        ReadBytes(_mm, a + Page, 1).Should().Equal(7);
        _mm.ShouldHold(a, 1, seed: 1);
    }

    [Fact]
    public void ZeroOldSizeDuplicateOverPartOfTheSameArea()
    {
        ulong a = _mm.Mmap(Base, 4 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, a, 4, seed: 1);

        _mm.Mremap(a + (3 * Page), 0, Page, MoveTo, a).Should().Be(a);

        _mm.Areas().Select(v => (v.Start, v.End, v.PgOff)).Should().Equal((a, a + Page, 3UL), (a + Page, a + (4 * Page), 1UL));
        _mm.ShouldHoldFrom(a, 1, a + (3 * Page), seed: 1);
        _mm.ShouldHold(a + Page, 3, seed: 1);
    }

    [Fact]
    public void ZeroOldSizeWithoutMayMoveFailsWithEnomemAndChangesNothing()
    {
        ulong a = _mm.Mmap(Base, 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, a, 2, seed: 1);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => _mm.Mremap(a, 0, Page, MremapFlags.None))).ShouldFailWith(Errno.ENOMEM);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void MovingNotifiesUnmapOnTheOldRangeAndOnTheReplacedTarget()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        ulong t = _mm.MapAnonymousAt(Target, 2);
        Fill(_mm, a, 2, seed: 1);
        Fill(_mm, t, 2, seed: 2);
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        _mm.Mremap(a, 2 * Page, 2 * Page, MoveTo, Target);

        chain.Starts.Should().Equal((Target, Target + (2 * Page), MmuNotifierEvent.Unmap), (a, a + (2 * Page), MmuNotifierEvent.Unmap));
        chain.ShouldBeBalanced();
    }

    [Fact]
    public void ShrinkingNotifiesUnmapOnTheTail()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        _mm.Mremap(a, 4 * Page, Page, MremapFlags.None);

        chain.Starts.Should().Equal((a + Page, a + (4 * Page), MmuNotifierEvent.Unmap));
        chain.ShouldBeBalanced();
    }

    // ---- errors: each leaves everything as it was ----

    public static TheoryData<ulong, ulong, ulong, MremapFlags, ulong> InvalidArguments() => new()
    {
        { Base + 0x10, Page, Page, MremapFlags.MayMove, 0 },
        { Base, Page, 0, MremapFlags.MayMove, 0 },
        { Base, Page, ulong.MaxValue - 0x800, MremapFlags.MayMove, 0 },
        { Base, Page, Page, (MremapFlags)8, 0 },
        { Base, Page, Page, MremapFlags.Fixed, Target },
        { Base, Page, Page, MremapFlags.DontUnmap, 0 },
        { Base, Page, 2 * Page, MremapFlags.MayMove | MremapFlags.DontUnmap, 0 },
        { Base, Page, Page, MoveTo, Target + 0x10 },
        { Base, 2 * Page, 2 * Page, MoveTo, Base + Page },
        { Base, 2 * Page, 2 * Page, MoveTo, Base - Page },
        { Base, Page, 2 * Page, MoveTo, Mm.TaskSize - Page },
        { Base, Page, Page, MoveTo, Mm.TaskSize },
        { Base, 0, Page, MremapFlags.MayMove, 0 },
    };

    [Theory]
    [MemberData(nameof(InvalidArguments))]
    public void InvalidArgumentsFailWithEinvalAndChangeNothing(ulong oldAddress, ulong oldSize, ulong newSize, MremapFlags flags, ulong newAddress)
    {
        MmSnapshot before = PopulatedSnapshot();
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        ((Action)(() => _mm.Mremap(oldAddress, oldSize, newSize, flags, newAddress))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
        chain.Calls.Should().BeEmpty();
    }

    [Fact]
    public void DontUnmapOfANonExpandableAreaFailsWithEinvalAndChangesNothing()
    {
        MmSnapshot before = PopulatedSnapshot();
        SetFlags(Base, VmFlags.DontExpand);
        before = MmSnapshot.Capture(_mm, [.. before.Addresses.Select(x => (x, x + Page))]);

        ((Action)(() => _mm.Mremap(Base, Page, Page, MremapFlags.MayMove | MremapFlags.DontUnmap))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
    }

    [Theory]
    [InlineData(Base + 0x6000, Page, Page, MremapFlags.MayMove)]
    [InlineData(0x7000_0000_0000UL, Page, 2 * Page, MremapFlags.MayMove)]
    [InlineData(Base + 0x3000, 2 * Page, 2 * Page, MoveTo)]
    [InlineData(Base + 0x8000, 4 * Page, 4 * Page, MremapFlags.MayMove)]
    [InlineData(Mm.TaskSize - 0x1000, 2 * Page, 2 * Page, MremapFlags.MayMove)]
    [InlineData(Mm.TaskSize + 0x1000, Page, Page, MremapFlags.MayMove)]
    public void OldRangeNotWithinOneAreaFailsWithEfaultAndChangesNothing(ulong oldAddress, ulong oldSize, ulong newSize, MremapFlags flags)
    {
        MmSnapshot before = PopulatedSnapshot();
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        ((Action)(() => _mm.Mremap(oldAddress, oldSize, newSize, flags, Target))).ShouldFailWith(Errno.EFAULT);

        before.ShouldBeUnchanged();
        chain.Calls.Should().BeEmpty();
    }

    [Theory]
    [InlineData(MremapFlags.None)]
    [InlineData(MremapFlags.MayMove)]
    [InlineData(MoveTo)]
    public void GrowingANonExpandableAreaFailsWithEfaultAndChangesNothing(MremapFlags flags)
    {
        PopulatedSnapshot();
        ulong c = _mm.MapAnonymousAt(0x5000_0000, 1);
        Fill(_mm, c, 1, seed: 3);
        SetFlags(c, VmFlags.DontExpand);
        MmSnapshot before = MmSnapshot.Capture(_mm, (c, c + (4 * Page)), (Target, Target + (2 * Page)));

        ((Action)(() => _mm.Mremap(c, Page, 2 * Page, flags, Target))).ShouldFailWith(Errno.EFAULT);

        before.ShouldBeUnchanged();
        _mm.Mremap(c, Page, Page, MoveTo, Target).Should().Be(Target, "moving without growing is allowed");
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(0x1000UL)]
    [InlineData(Mm.MinimumAddress - 0x1000)]
    public void FixedTargetBelowTheMinimumAddressFailsWithEpermAndChangesNothing(ulong target)
    {
        MmSnapshot before = PopulatedSnapshot();
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        ((Action)(() => _mm.Mremap(Base, Page, Page, MoveTo, target))).ShouldFailWith(Errno.EPERM);

        before.ShouldBeUnchanged();
        chain.Calls.Should().BeEmpty();
        _mm.Areas().Should().OnlyContain(v => v.Start >= Mm.MinimumAddress);
    }

    [Fact]
    public void GrowingInPlaceWhenBlockedWithoutMayMoveFailsWithEnomemAndChangesNothing()
    {
        MmSnapshot before = PopulatedSnapshot();

        ((Action)(() => _mm.Mremap(Base, 4 * Page, 5 * Page, MremapFlags.None))).ShouldFailWith(Errno.ENOMEM);
        ((Action)(() => _mm.Mremap(Base, 2 * Page, 3 * Page, MremapFlags.None))).ShouldFailWith(Errno.ENOMEM);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void NoRoomToMoveFailsWithEnomemAndChangesNothing()
    {
        ulong low = _mm.MapAnonymousAt(Mm.MinimumAddress, 2);
        Fill(_mm, low, 2, seed: 1);
        _mm.Mmap(Mm.MinimumAddress + (3 * Page), Mm.TaskSize - Mm.MinimumAddress - (3 * Page), Protection.ReadWrite, PrivateAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, Mm.TaskSize - Page, 1, seed: 2);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => _mm.Mremap(low, 2 * Page, 4 * Page, MremapFlags.MayMove))).ShouldFailWith(Errno.ENOMEM);
        ((Action)(() => _mm.Mremap(low, 2 * Page, 2 * Page, MremapFlags.MayMove | MremapFlags.DontUnmap))).ShouldFailWith(Errno.ENOMEM);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void MremapAfterExitFailsWithEsrchAndChangesNothing()
    {
        PopulatedSnapshot();
        _mm.Exit();
        ulong free = _memory.FreeRamPages;

        ((Action)(() => _mm.Mremap(Base, Page, 2 * Page, MremapFlags.MayMove))).ShouldFailWith(Errno.ESRCH);

        _memory.FreeRamPages.Should().Be(free);
    }

    private void SetFlags(ulong address, VmFlags flags)
    {
        using MmapLockGuard guard = _mm.MmapWriteLock();
        _mm.FindVma(address)!.Flags |= flags;
    }

    /// <summary>
    /// [Base, +4 pages) private and written, [Base + 4 pages, +2 pages) shared and written right after it, a hole
    /// of two pages, then [Base + 8 pages, +2 pages) read-only; nothing at <see cref="Target"/>.
    /// </summary>
    private MmSnapshot PopulatedSnapshot()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        ulong b = _mm.Mmap(Base + (4 * Page), 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        ulong c = _mm.MapAnonymousAt(Base + (8 * Page), 2, Protection.Read);
        Fill(_mm, a, 4, seed: 1);
        Fill(_mm, b, 2, seed: 2);
        _mm.ShouldReadZeros(c, 2);
        return MmSnapshot.Capture(_mm, (Base - Page, Base + (12 * Page)), (Target, Target + (4 * Page)));
    }
}
