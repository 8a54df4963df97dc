using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

public class MmMadviseTests
{
    private const ulong Base = 0x4000_0000;

    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _mm;

    public MmMadviseTests()
    {
        _mm = new Mm(_memory);
    }

    [Fact]
    public void AKernelBugInsideTheZapStillEndsTheInvalidationSoMirrorsDoNotWaitForEver()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        Fill(_mm, a, 1, seed: 2);
        Pfn page = _mm.ReadPte(a).Pfn;
        MmuIntervalNotifier mirror = MmuIntervalNotifier.Insert(_mm, a, Page, new Mirroring.RecordingIntervalOps());
        _memory.LockPage(page);   // a lock held without a reference: the zap drops the last one and frees it locked

        Action zap = () => _mm.Madvise(a, Page, Advice.DontNeed);

        zap.Should().Throw<KernelBugException>().WithMessage("*Bad page state*");
        MmuNotifierSubscriptions subscriptions = MmuNotifierSubscriptions.Of(_mm);
        subscriptions.ActiveInvalidateRanges.Should().Be(0, "the invalidation ended with the exception");
        subscriptions.IsInvalidating.Should().BeFalse();
        ulong sequence = mirror.ReadBegin();   // returns instead of sleeping on an epoch that never ends
        mirror.ReadRetry(sequence).Should().BeFalse();
    }

    [Fact]
    public void DontNeedMakesAnonymousMemoryReadZerosAndFreesItsPages()
    {
        ulong free = _memory.FreeRamPages;
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        var areas = _mm.AreaShapes();

        _mm.Madvise(a, 4 * Page, Advice.DontNeed);

        _memory.FreeRamPages.Should().Be(free);
        _mm.ReadPte(a).IsNone.Should().BeTrue();
        _mm.PageTable.PteTableCount.Should().Be(0);
        _mm.AreaShapes().Should().Equal(areas, "madvise does not change the areas");
        _mm.ShouldReadZeros(a, 4);
    }

    [Fact]
    public void DontNeedOnPartOfAnAreaKeepsTheRestAndDoesNotSplit()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        ulong free = _memory.FreeRamPages;

        _mm.Madvise(a + Page, 2 * Page, Advice.DontNeed);

        _mm.Areas().Should().ContainSingle();
        _memory.FreeRamPages.Should().Be(free + 2);
        _mm.PageTable.PteTableCount.Should().Be(1);
        _mm.ShouldHold(a, 1, seed: 1);
        _mm.ShouldReadZeros(a + Page, 2);
        _mm.ShouldHold(a + (3 * Page), 1, seed: 1);
    }

    [Fact]
    public void DontNeedAcrossSeveralAreasDropsThemAll()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        ulong b = _mm.MapAnonymousAt(Base + (2 * Page), 2, Protection.ReadWrite | Protection.Exec);
        Fill(_mm, a, 2, seed: 1);
        Fill(_mm, b, 2, seed: 2);
        ulong free = _memory.FreeRamPages;

        _mm.Madvise(a + Page, 2 * Page, Advice.DontNeed);

        _memory.FreeRamPages.Should().Be(free + 2);
        _mm.ShouldHold(a, 1, seed: 1);
        _mm.ShouldReadZeros(a + Page, 2);
        _mm.ShouldHold(b + Page, 1, seed: 2);
    }

    [Fact]
    public void DontNeedOnASharedFileMappingRefaultsTheFilesBytes()
    {
        SimFile file = PatternFile(_memory, 2, seed: 3);
        ulong a = _mm.Mmap(Base, 2 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.FixedNoReplace, file);
        _mm.Write(a + 1, [77]);
        Pfn page = _mm.ReadPte(a).Pfn;

        _mm.Madvise(a, 2 * Page, Advice.DontNeed);

        _mm.ReadPte(a).IsNone.Should().BeTrue();
        _memory.Page(page).MapCount.Should().Be(0);
        byte[] expected = Pattern(0, (int)(2 * Page), seed: 3);
        expected[1] = 77;
        ReadBytes(_mm, a, 2 * Page).Should().Equal(expected);
        _mm.ReadPte(a).Pfn.Should().Be(page, "the refault finds the same page-cache page");
    }

    [Fact]
    public void DontNeedOnAPrivateFileMappingDropsThePrivateCopies()
    {
        SimFile file = PatternFile(_memory, 2, seed: 3);
        ulong free = _memory.FreeRamPages;
        ulong a = _mm.Mmap(Base, 2 * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.FixedNoReplace, file);
        Fill(_mm, a, 2, seed: 4);

        _mm.Madvise(a, 2 * Page, Advice.DontNeed);

        _memory.FreeRamPages.Should().Be(free);
        _mm.ShouldHoldFrom(a, 2, 0, seed: 3);
    }

    [Fact]
    public void DontNeedOnSharedAnonymousMemoryKeepsItsContents()
    {
        ulong a = _mm.Mmap(Base, 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, a, 2, seed: 1);

        _mm.Madvise(a, 2 * Page, Advice.DontNeed);

        _mm.ReadPte(a).IsNone.Should().BeTrue();
        _mm.ShouldHold(a, 2, seed: 1);
    }

    [Fact]
    public void DontNeedAfterForkDropsOnlyThisProcessesMapping()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        Fill(_mm, a, 1, seed: 1);
        Pfn page = _mm.ReadPte(a).Pfn;
        Mm child = _mm.Fork();

        child.Madvise(a, Page, Advice.DontNeed);

        _memory.Page(page).MapCount.Should().Be(1);
        _memory.Page(page).RefCount.Should().Be(1);
        child.ShouldReadZeros(a, 1);
        _mm.ShouldHold(a, 1, seed: 1);
        child.Exit();
    }

    [Fact]
    public void FreeKeepsTheContentsAndCleansThePages()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        Pfn page = _mm.ReadPte(a).Pfn;
        _mm.ReadPte(a).IsDirty.Should().BeTrue();
        ulong free = _memory.FreeRamPages;

        _mm.Madvise(a, 2 * Page, Advice.Free);

        _memory.FreeRamPages.Should().Be(free);
        Pte pte = _mm.ReadPte(a);
        (pte.IsPresent, pte.IsDirty, pte.Pfn).Should().Be((true, false, page));
        _memory.Page(page).Flags.Should().NotHaveFlag(PageFlags.Dirty).And.NotHaveFlag(PageFlags.SwapBacked);
        _mm.ShouldHold(a, 2, seed: 1);

        _mm.Write(a, [1]);
        _mm.ReadPte(a).IsDirty.Should().BeTrue("a new write makes the page dirty again, so it must not be discarded");
    }

    [Fact]
    public void FreeLeavesPagesSharedWithAChildAlone()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        Fill(_mm, a, 1, seed: 1);
        Pte before = _mm.ReadPte(a);
        Mm child = _mm.Fork();
        Pte shared = _mm.ReadPte(a);

        _mm.Madvise(a, Page, Advice.Free);

        _mm.ReadPte(a).Should().Be(shared);
        shared.Pfn.Should().Be(before.Pfn);
        child.ShouldHold(a, 1, seed: 1);
        child.Exit();
    }

    // ---- errors: each leaves everything as it was ----

    [Theory]
    [InlineData(Base + 0x10, Page, Advice.DontNeed)]
    [InlineData(Base + 0x800, 0UL, Advice.Free)]
    [InlineData(Base, Page, (Advice)0)]
    [InlineData(Base, Page, (Advice)99)]
    [InlineData(Base, ulong.MaxValue, Advice.DontNeed)]
    [InlineData(Base, ulong.MaxValue - 0x800, Advice.Free)]
    public void InvalidArgumentsFailWithEinvalAndChangeNothing(ulong address, ulong length, Advice advice)
    {
        MmSnapshot before = PopulatedSnapshot();
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        ((Action)(() => _mm.Madvise(address, length, advice))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
        chain.Calls.Should().BeEmpty();
    }

    [Theory]
    [InlineData(VmFlags.Io)]
    [InlineData(VmFlags.PfnMap)]
    public void DontNeedOnAnIoAreaFailsWithEinvalAndChangesNothing(VmFlags kind)
    {
        PopulatedSnapshot();
        using (MmapLockGuard guard = _mm.MmapWriteLock())
        {
            _mm.FindVma(Base + (4 * Page))!.Flags |= kind;
        }

        MmSnapshot before = MmSnapshot.Capture(_mm, (Base, Base + (10 * Page)));

        ((Action)(() => _mm.Madvise(Base, 6 * Page, Advice.DontNeed))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
    }

    [Theory]
    [InlineData(Base + 0x4000, 2 * Page)]
    [InlineData(Base, 6 * Page)]
    [InlineData(Base + 0x8000, Page)]
    public void FreeOnMemoryOtherThanPrivateAnonymousFailsWithEinvalAndChangesNothing(ulong address, ulong length)
    {
        MmSnapshot before = PopulatedSnapshot();

        ((Action)(() => _mm.Madvise(address, length, Advice.Free))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
        _mm.ReadPte(Base).IsDirty.Should().BeTrue("the private part before the shared area was not cleaned either");
    }

    /// <summary>
    /// [Base, +4 pages) private and written, [Base + 4 pages, +2 pages) shared and written right after it, a hole
    /// of two pages, then [Base + 8 pages, +2 pages) a private file mapping, written.
    /// </summary>
    private MmSnapshot PopulatedSnapshot()
    {
        SimFile file = PatternFile(_memory, 2, seed: 3);
        ulong a = _mm.MapAnonymousAt(Base, 4);
        ulong b = _mm.Mmap(Base + (4 * Page), 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        ulong c = _mm.Mmap(Base + (8 * Page), 2 * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.FixedNoReplace, file);
        Fill(_mm, a, 4, seed: 1);
        Fill(_mm, b, 2, seed: 2);
        Fill(_mm, c, 1, seed: 4);
        _mm.ShouldHoldFrom(c + Page, 1, Page, seed: 3);
        return MmSnapshot.Capture(_mm, (Base - Page, Base + (12 * Page)));
    }
}
