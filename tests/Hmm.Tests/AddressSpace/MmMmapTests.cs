using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

public class MmMmapTests
{
    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _mm;

    public MmMmapTests()
    {
        _mm = new Mm(_memory);
    }

    [Fact]
    public void PrivateAnonymousMappingIsOneAreaWithTheAskedProtection()
    {
        ulong a = _mm.Mmap(0, 3 * Page, Protection.ReadWrite, PrivateAnonymous);

        Vma vma = _mm.Areas().Should().ContainSingle().Which;
        vma.Start.Should().Be(a);
        vma.End.Should().Be(a + (3 * Page));
        vma.Flags.Should().Be(VmFlags.Read | VmFlags.Write | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec);
        vma.IsAnonymous.Should().BeTrue();
        vma.IsShared.Should().BeFalse();
        vma.PgOff.Should().Be(a >> PageSize.Shift);
        vma.Mm.Should().BeSameAs(_mm);
        _mm.VmaCount.Should().Be(1);
        _mm.ReadPte(a).IsNone.Should().BeTrue("nothing is populated until touched");
    }

    [Theory]
    [InlineData(Protection.None, VmFlags.None)]
    [InlineData(Protection.Read, VmFlags.Read)]
    [InlineData(Protection.Read | Protection.Exec, VmFlags.Read | VmFlags.Exec)]
    [InlineData(Protection.ReadWrite | Protection.Exec, VmFlags.Read | VmFlags.Write | VmFlags.Exec)]
    public void ProtectionBecomesTheAreaAccessFlags(Protection protection, VmFlags access)
    {
        ulong a = _mm.Mmap(0, Page, protection, PrivateAnonymous);

        _mm.Areas().Single().Flags.Should().Be(access | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec);
        _mm.Munmap(a, Page);
    }

    [Theory]
    [InlineData(1UL, 1UL)]
    [InlineData(4095UL, 1UL)]
    [InlineData(4096UL, 1UL)]
    [InlineData(4097UL, 2UL)]
    [InlineData(5UL * 4096, 5UL)]
    public void LengthIsRoundedUpToWholePages(ulong length, ulong pages)
    {
        ulong a = _mm.Mmap(0, length, Protection.Read, PrivateAnonymous);

        Vma vma = _mm.Areas().Single();
        (vma.End - vma.Start).Should().Be(pages * Page);
        vma.Start.Should().Be(a);
    }

    [Fact]
    public void MappingsArePlacedTopDownBelowTaskSize()
    {
        ulong first = _mm.MapAnonymous(2);
        ulong second = _mm.MapAnonymous(3);
        ulong third = _mm.MapAnonymous(1);

        first.Should().Be(Mm.TaskSize - (2 * Page));
        second.Should().Be(first - (3 * Page));
        third.Should().Be(second - Page);
        _mm.Areas().Select(v => v.Start).Should().Equal(third, second, first);
    }

    [Fact]
    public void TopDownPlacementReusesTheHighestHoleThatFits()
    {
        ulong top = _mm.MapAnonymous(1);
        ulong middle = _mm.MapAnonymous(4);
        ulong bottom = _mm.MapAnonymous(1);
        _mm.Munmap(middle, 4 * Page);

        ulong small = _mm.MapAnonymous(2);
        ulong large = _mm.MapAnonymous(8);

        small.Should().Be(top - (2 * Page), "the hole under the top mapping fits two pages");
        large.Should().Be(bottom - (8 * Page), "the remaining two-page hole is too small for eight");
    }

    [Fact]
    public void HintIsHonouredWhenTheRangeIsFree()
    {
        const ulong Hint = 0x7000_0000_0000;

        ulong a = _mm.Mmap(Hint, 4 * Page, Protection.ReadWrite, PrivateAnonymous);

        a.Should().Be(Hint);
        _mm.Areas().Single().PgOff.Should().Be(Hint >> PageSize.Shift);
    }

    [Fact]
    public void UnalignedHintIsRoundedDownToItsPage()
    {
        ulong a = _mm.Mmap(0x7000_0000_0123, Page, Protection.Read, PrivateAnonymous);

        a.Should().Be(0x7000_0000_0000UL);
    }

    [Fact]
    public void HintOverAnExistingMappingFallsBackToTopDown()
    {
        ulong taken = _mm.MapAnonymousAt(0x4000_0000, 4);

        ulong a = _mm.Mmap(taken + Page, Page, Protection.Read, PrivateAnonymous);

        a.Should().Be(Mm.TaskSize - Page);
        _mm.Areas().Should().HaveCount(2);
    }

    [Theory]
    [InlineData(0x1000UL)]
    [InlineData(Mm.TaskSize - 0x1000)]
    public void HintThatCannotHoldTheMappingIsIgnored(ulong hint)
    {
        ulong a = _mm.Mmap(hint, 2 * Page, Protection.Read, PrivateAnonymous);

        a.Should().Be(Mm.TaskSize - (2 * Page));
    }

    [Fact]
    public void FixedNoReplaceMapsExactlyAtTheAddress()
    {
        ulong a = _mm.Mmap(Mm.MinimumAddress, 2 * Page, Protection.ReadWrite, PrivateAnonymous | MapFlags.FixedNoReplace);

        a.Should().Be(Mm.MinimumAddress);
        _mm.Areas().Single().Start.Should().Be(Mm.MinimumAddress);
    }

    [Fact]
    public void FixedMappingsMaySpanFromTheMinimumAddressToTaskSize()
    {
        ulong low = _mm.Mmap(Mm.MinimumAddress, Page, Protection.Read, PrivateAnonymous | MapFlags.Fixed);
        ulong high = _mm.Mmap(Mm.TaskSize - Page, Page, Protection.ReadWrite, PrivateAnonymous | MapFlags.FixedNoReplace);

        (low, high).Should().Be((Mm.MinimumAddress, Mm.TaskSize - Page));
        Fill(_mm, high, 1, seed: 1);
        _mm.ShouldHold(high, 1, seed: 1);
        _mm.ShouldReadZeros(low, 1);
    }

    [Fact]
    public void FixedNoReplaceNextToAMappingSucceeds()
    {
        ulong a = _mm.MapAnonymousAt(0x4000_0000, 2);

        ulong below = _mm.MapAnonymousAt(a - Page, 1);
        ulong above = _mm.MapAnonymousAt(a + (2 * Page), 1);

        below.Should().Be(a - Page);
        above.Should().Be(a + (2 * Page));
        _mm.Areas().Should().HaveCount(3);
    }

    [Fact]
    public void FixedReplacesWhatWasMappedAndFreesItsPages()
    {
        ulong a = _mm.MapAnonymousAt(0x4000_0000, 4);
        Fill(_mm, a, 4, seed: 1);
        ulong free = _memory.FreeRamPages;

        ulong b = _mm.Mmap(a + Page, 2 * Page, Protection.Read, PrivateAnonymous | MapFlags.Fixed);

        b.Should().Be(a + Page);
        _memory.FreeRamPages.Should().Be(free + 2);
        _mm.AreaShapes().Should().Equal(
            (a, a + Page, VmFlags.Read | VmFlags.Write | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec, a >> PageSize.Shift),
            (a + Page, a + (3 * Page), VmFlags.Read | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec, (a + Page) >> PageSize.Shift),
            (a + (3 * Page), a + (4 * Page), VmFlags.Read | VmFlags.Write | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec, (a >> PageSize.Shift) + 3));
        _mm.ShouldHold(a, 1, seed: 1);
        _mm.ShouldReadZeros(a + Page, 2);
        _mm.ShouldHold(a + (3 * Page), 1, seed: 1);
    }

    [Fact]
    public void FixedOverSeveralMappingsAndHolesReplacesThemAll()
    {
        ulong a = _mm.MapAnonymousAt(0x4000_0000, 2);
        ulong b = _mm.MapAnonymousAt(a + (4 * Page), 2);
        Fill(_mm, a, 2, seed: 1);
        Fill(_mm, b, 2, seed: 2);
        ulong free = _memory.FreeRamPages;

        _mm.Mmap(a + Page, 4 * Page, Protection.ReadWrite, PrivateAnonymous | MapFlags.Fixed);

        _memory.FreeRamPages.Should().Be(free + 2);
        _mm.Areas().Select(v => (v.Start, v.End)).Should().Equal((a, a + Page), (a + Page, a + (5 * Page)), (a + (5 * Page), a + (6 * Page)));
        _mm.ShouldHold(a, 1, seed: 1);
        _mm.ShouldReadZeros(a + Page, 4);
        _mm.ShouldHold(a + (5 * Page), 1, seed: 2);
    }

    [Fact]
    public void FixedOverAFullyPopulatedRangeLeavesNoPageTables()
    {
        ulong a = _mm.MapAnonymousAt(0x4000_0000, 4);
        Fill(_mm, a, 4, seed: 1);

        _mm.Mmap(a, 4 * Page, Protection.ReadWrite, PrivateAnonymous | MapFlags.Fixed);

        _mm.PageTable.PteTableCount.Should().Be(0);
        _mm.ReadPte(a).IsNone.Should().BeTrue();
    }

    [Fact]
    public void FixedNotifiesUnmapOfWhatItReplacesOnly()
    {
        ulong a = _mm.MapAnonymousAt(0x4000_0000, 4);
        Fill(_mm, a, 4, seed: 1);
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        _mm.Mmap(a + Page, Page, Protection.Read, PrivateAnonymous | MapFlags.Fixed);
        _mm.Mmap(0x5000_0000, Page, Protection.Read, PrivateAnonymous | MapFlags.Fixed);
        _mm.Mmap(0, Page, Protection.Read, PrivateAnonymous);

        chain.Starts.Should().Equal((a + Page, a + (2 * Page), MmuNotifierEvent.Unmap));
        chain.ShouldBeBalanced();
    }

    [Fact]
    public void UntouchedAnonymousMemoryReadsZerosThroughTheZeroPage()
    {
        ulong a = _mm.MapAnonymous(2);
        ulong free = _memory.FreeRamPages;

        _mm.ShouldReadZeros(a, 2);

        _mm.ReadPte(a).Pfn.Should().Be(PhysicalMemory.ZeroPage);
        _mm.ReadPte(a).IsWritable.Should().BeFalse();
        _memory.FreeRamPages.Should().Be(free, "reads of untouched memory allocate nothing");
    }

    [Fact]
    public void SharedAnonymousMemoryIsSharedWithAForkedChild()
    {
        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, SharedAnonymous);
        Fill(_mm, a, 2, seed: 1);
        Vma vma = _mm.Areas().Single();
        vma.IsShared.Should().BeTrue();
        vma.IsAnonymous.Should().BeFalse("shared anonymous memory is backed by a shmem file");

        Mm child = _mm.Fork();
        child.ShouldHold(a, 2, seed: 1);
        child.Write(a + 10, [1, 2, 3]);
        _mm.Write(a + Page + 20, [4, 5]);

        ReadBytes(_mm, a + 10, 3).Should().Equal(1, 2, 3);
        ReadBytes(child, a + Page + 20, 2).Should().Equal(4, 5);
        child.ReadPte(a).Pfn.Should().Be(_mm.ReadPte(a).Pfn);
        child.ReadPte(a).IsWritable.Should().BeTrue("a shared mapping is never copy-on-write");
        child.Exit();
    }

    [Fact]
    public void SharedAnonymousMappingsAreIndependentOfEachOther()
    {
        ulong a = _mm.Mmap(0, Page, Protection.ReadWrite, SharedAnonymous);
        ulong b = _mm.Mmap(0, Page, Protection.ReadWrite, SharedAnonymous);

        _mm.Write(a, [7]);

        ReadBytes(_mm, b, 1).Should().Equal(0);
    }

    [Fact]
    public void SharedAnonymousMappingIgnoresTheOffset()
    {
        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, SharedAnonymous, offset: 4 * Page);

        Fill(_mm, a, 2, seed: 3);

        _mm.ShouldHold(a, 2, seed: 3);
    }

    [Fact]
    public void SharedFileMappingWritesReachTheFileAndFileWritesReachTheMapping()
    {
        SimFile file = PatternFile(_memory, 2, seed: 1);
        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Shared, file);
        _mm.Areas().Single().File.Should().BeSameAs(file);
        _mm.ShouldHoldFrom(a, 2, 0, seed: 1);

        _mm.Write(a + Page + 5, [9, 9]);
        file.Write(3, [8]);

        var fromFile = new byte[2];
        file.Read(Page + 5, fromFile);
        fromFile.Should().Equal(9, 9);
        ReadBytes(_mm, a + 3, 1).Should().Equal(8);
    }

    [Fact]
    public void PrivateFileMappingReadsTheFileButKeepsItsWritesToItself()
    {
        SimFile file = PatternFile(_memory, 2, seed: 1);
        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Private, file);
        ulong shared = _mm.Mmap(0, 2 * Page, Protection.Read, MapFlags.Shared, file);
        _mm.ShouldHoldFrom(a, 2, 0, seed: 1);

        Fill(_mm, a, 2, seed: 2);

        _mm.ShouldHold(a, 2, seed: 2);
        _mm.ShouldHoldFrom(shared, 2, 0, seed: 1);
        var fromFile = new byte[2 * Page];
        file.Read(0, fromFile);
        fromFile.Should().Equal(Pattern(0, (int)(2 * Page), seed: 1));
        _memory.Page(_mm.ReadPte(a).Pfn).Flags.Should().HaveFlag(PageFlags.Anon, "the written copy is anonymous memory");
    }

    [Fact]
    public void PrivateFileMappingCopiesAreFreedWhenUnmapped()
    {
        SimFile file = PatternFile(_memory, 2, seed: 1);
        ulong free = _memory.FreeRamPages;
        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Private, file);
        Fill(_mm, a, 2, seed: 2);

        _mm.Munmap(a, 2 * Page);

        _memory.FreeRamPages.Should().Be(free);
        file.CachedPages.Should().Be(2);
    }

    [Fact]
    public void FileOffsetSelectsTheFirstMappedPage()
    {
        SimFile file = PatternFile(_memory, 6, seed: 4);

        ulong a = _mm.Mmap(0, 3 * Page, Protection.Read, MapFlags.Shared, file, offset: 2 * Page);

        _mm.Areas().Single().PgOff.Should().Be(2);
        ReadBytes(_mm, a, 3 * Page).Should().Equal(Pattern(2 * Page, (int)(3 * Page), seed: 4));
    }

    [Fact]
    public void FileMappingBeyondTheEndOfTheFileRaisesABusError()
    {
        SimFile file = PatternFile(_memory, 1, seed: 4);
        ulong a = _mm.Mmap(0, 2 * Page, Protection.Read, MapFlags.Shared, file);

        SegmentationFaultException fault = ((Action)(() => _mm.Read(a + Page, new byte[1]))).ShouldSegfault();

        fault.IsBusError.Should().BeTrue();
        fault.Address.Should().Be(a + Page);
    }

    [Fact]
    public void ReadOnlyMappingRejectsWrites()
    {
        ulong a = _mm.MapAnonymous(1, Protection.Read);

        SegmentationFaultException fault = ((Action)(() => _mm.Write(a, [1]))).ShouldSegfault();

        fault.IsWrite.Should().BeTrue();
        fault.IsBusError.Should().BeFalse();
        _mm.ShouldReadZeros(a, 1);
    }

    // ---- errors: each leaves everything as it was ----

    public static TheoryData<ulong, ulong, Protection, MapFlags, bool, ulong> InvalidArguments() => new()
    {
        { 0, 0, Protection.ReadWrite, PrivateAnonymous, false, 0 },
        { 0, Page, Protection.ReadWrite, MapFlags.Anonymous, false, 0 },
        { 0, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Private | MapFlags.Anonymous, false, 0 },
        { 0, Page, Protection.ReadWrite, PrivateAnonymous | (MapFlags)0x40, false, 0 },
        { 0, Page, (Protection)8, PrivateAnonymous, false, 0 },
        { 0, Page, Protection.ReadWrite, PrivateAnonymous, true, 0 },
        { 0, Page, Protection.ReadWrite, MapFlags.Private, false, 0 },
        { 0x4000_0123, Page, Protection.ReadWrite, PrivateAnonymous | MapFlags.Fixed, false, 0 },
        { 0x4000_0123, Page, Protection.ReadWrite, PrivateAnonymous | MapFlags.FixedNoReplace, false, 0 },
        { 0, Page, Protection.ReadWrite, MapFlags.Shared, true, 100 },
        { 0, Page, Protection.ReadWrite, PrivateAnonymous, false, 100 },
    };

    [Theory]
    [MemberData(nameof(InvalidArguments))]
    public void InvalidArgumentsFailWithEinvalAndChangeNothing(ulong address, ulong length, Protection protection, MapFlags flags, bool withFile, ulong offset)
    {
        SimFile file = PatternFile(_memory, 2, seed: 9);
        MmSnapshot before = PopulatedSnapshot();

        ((Action)(() => _mm.Mmap(address, length, protection, flags, withFile ? file : null, offset))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
    }

    [Theory]
    [InlineData(0UL, Mm.TaskSize + 1, MapFlags.None)]
    [InlineData(0UL, ulong.MaxValue, MapFlags.None)]
    [InlineData(0UL, ulong.MaxValue - 4094, MapFlags.None)]
    [InlineData(Mm.TaskSize - 0x1000, 0x2000UL, MapFlags.Fixed)]
    [InlineData(Mm.TaskSize, 0x1000UL, MapFlags.FixedNoReplace)]
    [InlineData(Mm.TaskSize + 0x1000, 0x1000UL, MapFlags.Fixed)]
    public void RangesThatDoNotFitFailWithEnomemAndChangeNothing(ulong address, ulong length, MapFlags fixedFlag)
    {
        MmSnapshot before = PopulatedSnapshot();

        ((Action)(() => _mm.Mmap(address, length, Protection.Read, PrivateAnonymous | fixedFlag))).ShouldFailWith(Errno.ENOMEM);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void NoHoleLargeEnoughFailsWithEnomemAndChangesNothing()
    {
        ulong low = _mm.MapAnonymousAt(Mm.MinimumAddress, 2);
        Fill(_mm, low, 2, seed: 1);
        ulong high = _mm.Mmap(Mm.MinimumAddress + (3 * Page), Mm.TaskSize - Mm.MinimumAddress - (3 * Page), Protection.ReadWrite, PrivateAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, Mm.TaskSize - Page, 1, seed: 2);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => _mm.Mmap(0, 2 * Page, Protection.Read, PrivateAnonymous))).ShouldFailWith(Errno.ENOMEM);

        before.ShouldBeUnchanged();
        _mm.Mmap(0, Page, Protection.Read, PrivateAnonymous).Should().Be(high - Page, "the one-page hole still fits one page");
    }

    [Theory]
    [InlineData(0x1000UL, MapFlags.Fixed)]
    [InlineData(Mm.MinimumAddress - 0x1000, MapFlags.Fixed)]
    [InlineData(0UL, MapFlags.FixedNoReplace)]
    public void FixedAddressBelowTheMinimumFailsWithEpermAndChangesNothing(ulong address, MapFlags fixedFlag)
    {
        MmSnapshot before = PopulatedSnapshot();

        ((Action)(() => _mm.Mmap(address, Page, Protection.Read, PrivateAnonymous | fixedFlag))).ShouldFailWith(Errno.EPERM);

        before.ShouldBeUnchanged();
    }

    [Theory]
    [InlineData(0L, 1UL)]
    [InlineData(-1L, 2UL)]
    [InlineData(3L, 1UL)]
    [InlineData(-2L, 8UL)]
    public void FixedNoReplaceOverAMappingFailsWithEexistAndChangesNothing(long pageOffset, ulong pages)
    {
        MmSnapshot before = PopulatedSnapshot();
        ulong target = (ulong)((long)before.Areas[0].Start + (pageOffset * (long)Page));

        ((Action)(() => _mm.Mmap(target, pages * Page, Protection.Read, PrivateAnonymous | MapFlags.FixedNoReplace))).ShouldFailWith(Errno.EEXIST);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void FileOffsetPlusLengthOverflowingFailsWithEoverflowAndChangesNothing()
    {
        SimFile file = PatternFile(_memory, 2, seed: 9);
        MmSnapshot before = PopulatedSnapshot();

        ((Action)(() => _mm.Mmap(0, 2 * Page, Protection.Read, MapFlags.Shared, file, offset: ulong.MaxValue & PageSize.Mask))).ShouldFailWith(Errno.EOVERFLOW);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void MmapAfterExitFailsWithEsrchAndChangesNothing()
    {
        PopulatedSnapshot();
        ulong free = _memory.FreeRamPages;
        _mm.Exit();
        ulong freeAfterExit = _memory.FreeRamPages;

        ((Action)(() => _mm.Mmap(0, Page, Protection.Read, PrivateAnonymous))).ShouldFailWith(Errno.ESRCH);
        ((Action)(() => _mm.Mmap(0x4000_0000, Page, Protection.Read, PrivateAnonymous | MapFlags.Fixed))).ShouldFailWith(Errno.ESRCH);

        freeAfterExit.Should().BeGreaterThan(free);
        _memory.FreeRamPages.Should().Be(freeAfterExit);
        _mm.PageTable.PteTableCount.Should().Be(0);
    }

    /// <summary>Three areas at known places, each written (so present and writable), and their snapshot.</summary>
    private MmSnapshot PopulatedSnapshot()
    {
        ulong a = _mm.MapAnonymousAt(0x4000_0000, 4);
        ulong b = _mm.MapAnonymousAt(0x4000_8000, 2, Protection.Read);
        ulong c = _mm.Mmap(0x5000_0000, 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, a, 4, seed: 1);
        _mm.ShouldReadZeros(b, 2);
        Fill(_mm, c, 2, seed: 2);
        return MmSnapshot.Capture(_mm, (a - (4 * Page), a), (c + (2 * Page), c + (6 * Page)));
    }
}
