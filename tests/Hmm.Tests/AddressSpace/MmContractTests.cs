using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

/// <summary>
/// Calls that must be refused before they change anything: objects of another machine or address space, stale
/// areas, accesses an area does not permit, and the edge cases where the kernel's errno differs.
/// </summary>
public class MmContractTests
{
    private const ulong Base = 0x4000_0000;

    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _mm;

    public MmContractTests()
    {
        _mm = new Mm(_memory, "this");
    }

    [Fact]
    public void MmapOfAFileOfAnotherMachineIsEinvalAndChangesNothing()
    {
        PhysicalMemory other = NewMemory(ramMiB: 4);
        SimFile foreign = PatternFile(other, 2, seed: 3, name: "foreign");
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        MmSnapshot before = MmSnapshot.Capture(_mm, (Base + (4 * Page), Base + (6 * Page)));
        ulong otherFree = other.FreeRamPages;
        int cached = foreign.CachedPages;

        foreach (MapFlags flags in new[] { MapFlags.Shared, MapFlags.Private, MapFlags.SharedValidate, MapFlags.Shared | MapFlags.Fixed })
        {
            HmmException error = ((Action)(() => _mm.Mmap(Base + (4 * Page), 2 * Page, Protection.ReadWrite, flags, foreign))).ShouldFailWith(Errno.EINVAL);
            error.Message.Should().Contain("foreign").And.Contain("this");
        }

        ((Action)(() => _mm.Mmap(a, 2 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, foreign))).ShouldFailWith(Errno.EINVAL);
        before.ShouldBeUnchanged();
        _mm.ShouldHold(a, 2, seed: 1);
        other.FreeRamPages.Should().Be(otherFree);
        foreign.CachedPages.Should().Be(cached);
    }

    [Fact]
    public void AnonymousSharedMemoryWhoseLastMappingIsGoneCannotBeMappedAgain()
    {
        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, SharedAnonymous);
        SimFile shmem = VmaAt(_mm, a).File!;
        _mm.Munmap(a, 2 * Page);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => _mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Shared, shmem))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
        _mm.VmaCount.Should().Be(0);
    }

    [Fact]
    public void DirectAccessToAnonymousSharedMemoryWhoseLastMappingIsGoneIsEinvalAndAllocatesNothing()
    {
        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, SharedAnonymous);
        SimFile shmem = VmaAt(_mm, a).File!;
        _mm.Munmap(a, 2 * Page);
        ulong free = _memory.FreeRamPages;

        ((Action)(() => shmem.Write(0, [1]))).ShouldFailWith(Errno.EINVAL);
        ((Action)(() => shmem.Read(0, new byte[1]))).ShouldFailWith(Errno.EINVAL);

        _memory.FreeRamPages.Should().Be(free, "a page cached now would never be freed");
        shmem.CachedPages.Should().Be(0);
    }

    [Fact]
    public void AFileOfNearlyTwoToTheSixtyFourBytesIsReadableThroughAMapping()
    {
        var file = new SimFile(_memory, "huge", ulong.MaxValue - 5);
        file.Write(0, [42]);

        ulong a = _mm.Mmap(0, Page, Protection.Read, MapFlags.Shared, file);

        ReadBytes(_mm, a, 1).Should().Equal(42);
    }

    [Fact]
    public void AFixedMappingOverTheLastMappingOfAnonymousSharedMemoryKeepsItsBytes()
    {
        ulong a = _mm.Mmap(Base, 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, a, 2, seed: 5);
        SimFile shmem = VmaAt(_mm, a).File!;

        _mm.Mmap(a, 2 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, shmem).Should().Be(a);

        _mm.ShouldHold(a, 2, seed: 5);
        shmem.CachedPages.Should().Be(2);
    }

    [Fact]
    public void HandleMmFaultWithAnAreaOfAnotherAddressSpaceIsEinvalAndInstallsNothing()
    {
        var other = new Mm(_memory, "other");
        ulong a = other.MapAnonymousAt(Base, 1);
        Vma foreign = VmaAt(other, a);
        MmSnapshot before = MmSnapshot.Capture(_mm, (a, a + Page));

        using (_mm.MmapReadLock())
        {
            HmmException error = ((Action)(() => _mm.HandleMmFault(foreign, a, FaultFlags.Write))).ShouldFailWith(Errno.EINVAL);
            error.Message.Should().Contain("other").And.Contain("this");
        }

        before.ShouldBeUnchanged();
        _mm.ReadPte(a).IsNone.Should().BeTrue();
        other.ReadPte(a).IsNone.Should().BeTrue();
    }

    [Fact]
    public void HandleMmFaultOutsideItsAreaIsEfaultAndInstallsNothing()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        Vma vma = VmaAt(_mm, a);
        MmSnapshot before = MmSnapshot.Capture(_mm, (a + Page, a + (2 * Page)), (a - Page, a));

        using (_mm.MmapReadLock())
        {
            ((Action)(() => _mm.HandleMmFault(vma, a + Page, FaultFlags.Write))).ShouldFailWith(Errno.EFAULT);
            ((Action)(() => _mm.HandleMmFault(vma, a - Page, FaultFlags.None))).ShouldFailWith(Errno.EFAULT);
            ((Action)(() => _mm.HandleMmFault(vma, Mm.TaskSize + a, FaultFlags.None))).ShouldFailWith(Errno.EFAULT);
        }

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void HandleMmFaultWithAnUnmappedAreaIsEfaultAndInstallsNothing()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Vma stale = VmaAt(_mm, a);
        _mm.Munmap(a, 2 * Page);
        MmSnapshot before = MmSnapshot.Capture(_mm, (a, a + (2 * Page)));

        using (_mm.MmapReadLock())
        {
            ((Action)(() => _mm.HandleMmFault(stale, a, FaultFlags.Write))).ShouldFailWith(Errno.EFAULT);
        }

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void HandleMmFaultWithTheLowPartOfASplitAreaAtAnAddressOfTheHighPartIsEfault()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Vma original = VmaAt(_mm, a);
        _mm.Mprotect(a + (2 * Page), 2 * Page, Protection.Read);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        using (_mm.MmapReadLock())
        {
            ((Action)(() => _mm.HandleMmFault(original, a + (3 * Page), FaultFlags.Write))).ShouldFailWith(Errno.EFAULT);
        }

        before.ShouldBeUnchanged();
    }

    [Theory]
    [InlineData(Protection.Read, FaultFlags.Write)]
    [InlineData(Protection.None, FaultFlags.None)]
    [InlineData(Protection.None, FaultFlags.Write)]
    [InlineData(Protection.None, FaultFlags.Unshare)]
    public void AFaultTheAreaDoesNotPermitIsSigsegvAndInstallsNothing(Protection protection, FaultFlags flags)
    {
        ulong a = _mm.MapAnonymousAt(Base, 1, protection);
        Vma vma = VmaAt(_mm, a);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        using (_mm.MmapReadLock())
        {
            _mm.HandleMmFault(vma, a, flags).Should().Be(VmFaultResult.Sigsegv);
        }

        before.ShouldBeUnchanged();
        _mm.ReadPte(a).IsNone.Should().BeTrue();
    }

    [Fact]
    public void AReadFaultOnAWriteOnlyAreaIsAllowedAsOnX86()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1, Protection.Write);
        Vma vma = VmaAt(_mm, a);
        using MmapLockGuard guard = _mm.MmapReadLock();

        _mm.HandleMmFault(vma, a, FaultFlags.None).Should().Be(VmFaultResult.None);
        _mm.ReadPte(a).IsPresent.Should().BeTrue();
    }

    [Fact]
    public void MremapToANewSizeAboveTheTopOfUserSpaceIsEinvalAndChangesNothing()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 2);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => _mm.Mremap(a, 2 * Page, Mm.TaskSize + Page, MremapFlags.MayMove))).ShouldFailWith(Errno.EINVAL);
        ((Action)(() => _mm.Mremap(a, 2 * Page, Mm.TaskSize + Page, MremapFlags.None))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void MremapWithAnOldSizeWhoseRoundingWrapsIsEinvalNotADuplicate()
    {
        ulong a = _mm.Mmap(Base, 2 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => _mm.Mremap(a, ulong.MaxValue, 2 * Page, MremapFlags.MayMove))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void MapSharedValidateMapsAFileShared()
    {
        SimFile file = PatternFile(_memory, 2, seed: 4);

        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.SharedValidate, file);
        _mm.Write(a, [9]);

        VmaAt(_mm, a).IsShared.Should().BeTrue();
        var first = new byte[1];
        file.Read(0, first);
        first[0].Should().Be(9, "a shared mapping writes through to the file");
    }

    [Theory]
    [InlineData(MapFlags.SharedValidate | (MapFlags)0x40000, Errno.EOPNOTSUPP, false)]
    [InlineData(MapFlags.SharedValidate | MapFlags.Anonymous, Errno.EINVAL, true)]
    [InlineData(MapFlags.Shared | (MapFlags)0x40000, Errno.EINVAL, false)]
    [InlineData(MapFlags.None, Errno.EINVAL, false)]
    public void MmapFlagErrorsChangeNothing(MapFlags flags, Errno expected, bool anonymous)
    {
        SimFile file = PatternFile(_memory, 2, seed: 4);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => _mm.Mmap(0, 2 * Page, Protection.ReadWrite, flags, anonymous ? null : file))).ShouldFailWith(expected);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void UnpinChecksEveryPageBeforeDroppingAnyPin()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        var pages = new Pfn[2];
        _mm.PinUserPages(a, GupFlags.Write, pages).Should().Be(2);
        int[] refs = [.. pages.Select(p => _memory.PageRefCount(p))];

        ((Action)(() => _mm.UnpinUserPages([pages[0], pages[1], pages[1]]))).Should().Throw<KernelBugException>();

        pages.Select(p => _memory.PageRefCount(p)).Should().Equal(refs, "no pin was dropped");
        _mm.UnpinUserPages(pages);
        pages.Select(p => _memory.PageRefCount(p)).Should().Equal(refs.Select(r => r - Mm.PinCountingBias));
    }

    [Fact]
    public void UnpinOfAFrameWithoutStructPageIsEfaultAndDropsNoPin()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        var pages = new Pfn[1];
        _mm.PinUserPages(a, GupFlags.Write, pages);
        int refs = _memory.PageRefCount(pages[0]);
        var nowhere = new Pfn(DeviceBase >> PageSize.Shift);

        ((Action)(() => _mm.UnpinUserPages([pages[0], nowhere]))).ShouldFailWith(Errno.EFAULT);

        _memory.PageRefCount(pages[0]).Should().Be(refs);
    }

    [Theory]
    [InlineData(Base + 1, 1)]
    [InlineData(Mm.TaskSize, 1)]
    [InlineData(Mm.TaskSize - Page, 2)]
    [InlineData(ulong.MaxValue & PageSize.Mask, 1)]
    public void GupOfABadRangeIsEinvalAndTakesNothing(ulong start, int count)
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        Fill(_mm, a, 1, seed: 1);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => _mm.GetUserPages(start, GupFlags.None, new Pfn[count]))).ShouldFailWith(Errno.EINVAL);
        ((Action)(() => _mm.PinUserPages(start, GupFlags.None, new Pfn[count]))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void EveryEntryPointAfterExitIsEsrchAndChangesNothing()
    {
        var mm = new Mm(_memory, "gone");
        ulong a = mm.MapAnonymousAt(Base, 1);
        Fill(mm, a, 1, seed: 1);
        mm.Exit();
        ulong free = _memory.FreeRamPages;

        Action[] calls =
        [
            () => mm.Mmap(0, Page, Protection.ReadWrite, PrivateAnonymous),
            () => mm.MmapSpecial(0, Page, Protection.ReadWrite, MapFlags.Shared, VmFlags.MixedMap),
            () => mm.Munmap(a, Page),
            () => mm.Mprotect(a, Page, Protection.Read),
            () => mm.Mprotect(a, 0, Protection.Read),
            () => mm.Madvise(a, Page, Advice.DontNeed),
            () => mm.Mremap(a, Page, 2 * Page, MremapFlags.MayMove),
            () => mm.Read(a, new byte[1]),
            () => mm.Write(a, new byte[1]),
            () => mm.GetUserPages(a, GupFlags.None, new Pfn[1]),
            () => mm.PinUserPages(a, GupFlags.None, new Pfn[1]),
            () => mm.Fork(),
            () => mm.Areas(),
        ];

        foreach (Action call in calls)
        {
            call.ShouldFailWith(Errno.ESRCH);
        }

        _memory.FreeRamPages.Should().Be(free);
    }
}
