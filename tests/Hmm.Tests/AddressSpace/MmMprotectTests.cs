using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

public class MmMprotectTests
{
    private const ulong Base = 0x4000_0000;
    private const VmFlags May = VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec;

    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _mm;

    public MmMprotectTests()
    {
        _mm = new Mm(_memory);
    }

    [Fact]
    public void ProtectingAWholeAreaChangesItsFlagsWithoutSplitting()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);

        _mm.Mprotect(a, 4 * Page, Protection.Read | Protection.Exec);

        _mm.AreaShapes().Should().Equal((a, a + (4 * Page), VmFlags.Read | VmFlags.Exec | May, a >> PageSize.Shift));
    }

    [Fact]
    public void ProtectingTheMiddleSplitsTheAreaInThreeWithCorrectPgOffs()
    {
        ulong a = _mm.MapAnonymousAt(Base, 5);
        Fill(_mm, a, 5, seed: 1);

        _mm.Mprotect(a + Page, 2 * Page, Protection.Read);

        ulong pgoff = a >> PageSize.Shift;
        _mm.AreaShapes().Should().Equal(
            (a, a + Page, VmFlags.Read | VmFlags.Write | May, pgoff),
            (a + Page, a + (3 * Page), VmFlags.Read | May, pgoff + 1),
            (a + (3 * Page), a + (5 * Page), VmFlags.Read | VmFlags.Write | May, pgoff + 3));
        _mm.ShouldHold(a, 5, seed: 1);
        Rmap.FindMappings(_memory, _mm.ReadPte(a + (4 * Page)).Pfn).Should().ContainSingle().Which.Address.Should().Be(a + (4 * Page));
    }

    [Fact]
    public void ProtectingARangeAcrossTwoAreasSplitsOnlyAtItsEnds()
    {
        ulong a = _mm.MapAnonymousAt(Base, 3);
        ulong b = _mm.MapAnonymousAt(Base + (3 * Page), 3, Protection.Read);

        _mm.Mprotect(a + Page, 4 * Page, Protection.None);

        _mm.Areas().Select(v => (v.Start, v.End, v.Flags & (VmFlags.Read | VmFlags.Write))).Should().Equal(
            (a, a + Page, VmFlags.Read | VmFlags.Write),
            (a + Page, a + (3 * Page), VmFlags.None),
            (b, b + (2 * Page), VmFlags.None),
            (b + (2 * Page), b + (3 * Page), VmFlags.Read));
    }

    [Fact]
    public void RemovingWriteWriteProtectsEntriesSoTheNextWriteFaults()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        Pfn page = _mm.ReadPte(a).Pfn;
        _mm.ReadPte(a).IsWritable.Should().BeTrue();

        _mm.Mprotect(a, 2 * Page, Protection.Read);

        _mm.ReadPte(a).IsWritable.Should().BeFalse();
        _mm.ReadPte(a + Page).IsWritable.Should().BeFalse();
        _mm.ReadPte(a).Pfn.Should().Be(page);
        _mm.ShouldHold(a, 2, seed: 1);

        _mm.Mprotect(a, 2 * Page, Protection.ReadWrite);
        _mm.ReadPte(a).IsWritable.Should().BeFalse("restoring write access does not touch the entries; the next write faults");
        ulong free = _memory.FreeRamPages;

        _mm.Write(a, [7]);

        _mm.ReadPte(a).IsWritable.Should().BeTrue();
        _mm.ReadPte(a).Pfn.Should().Be(page, "the page is exclusively ours, so the write fault reuses it");
        _memory.FreeRamPages.Should().Be(free);
        _mm.ReadPte(a + Page).IsWritable.Should().BeFalse();
    }

    [Fact]
    public void ReadOnlyProtectionMakesCpuWritesThrow()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);

        _mm.Mprotect(a + Page, Page, Protection.Read);

        SegmentationFaultException fault = ((Action)(() => _mm.Write(a + Page + 8, [1]))).ShouldSegfault();
        fault.Address.Should().Be(a + Page + 8);
        fault.IsWrite.Should().BeTrue();
        fault.IsBusError.Should().BeFalse();
        fault.Error.Should().Be(Errno.EFAULT);
        _mm.ShouldHold(a, 2, seed: 1);
        _mm.Write(a, [1]);
    }

    [Fact]
    public void WriteStraddlingIntoAReadOnlyPageStopsAtThatPage()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        _mm.Mprotect(a + Page, Page, Protection.Read);

        ((Action)(() => _mm.Write(a + Page - 2, [9, 9, 9, 9]))).ShouldSegfault().Address.Should().Be(a + Page);

        ReadBytes(_mm, a + Page - 2, 2).Should().Equal(9, 9);
        _mm.ShouldHold(a + Page, 1, seed: 1);
    }

    [Fact]
    public void ProtNoneMakesReadsAndWritesThrowAndKeepsTheData()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);

        _mm.Mprotect(a, 2 * Page, Protection.None);

        SegmentationFaultException read = ((Action)(() => _mm.Read(a + Page, new byte[1]))).ShouldSegfault();
        read.IsWrite.Should().BeFalse();
        read.Address.Should().Be(a + Page);
        ((Action)(() => _mm.Write(a, [1]))).ShouldSegfault().IsWrite.Should().BeTrue();

        _mm.Mprotect(a, 2 * Page, Protection.ReadWrite);
        _mm.ShouldHold(a, 2, seed: 1);
    }

    [Fact]
    public void ReadOnlySharedFileMappingRejectsWritesAndLeavesTheFileAlone()
    {
        SimFile file = PatternFile(_memory, 2, seed: 1);
        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Shared, file);
        _mm.Write(a, [5]);

        _mm.Mprotect(a, 2 * Page, Protection.Read);

        _mm.ReadPte(a).IsWritable.Should().BeFalse();
        ((Action)(() => _mm.Write(a, [6]))).ShouldSegfault();
        var b = new byte[1];
        file.Read(0, b);
        b[0].Should().Be(5);

        _mm.Mprotect(a, 2 * Page, Protection.ReadWrite);
        _mm.Write(a, [6]);
        file.Read(0, b);
        b[0].Should().Be(6, "a shared mapping's write fault makes the same page writable again");
    }

    [Fact]
    public void ProtectingCopyOnWriteMemoryAfterForkKeepsItShared()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        Fill(_mm, a, 1, seed: 1);
        Mm child = _mm.Fork();

        _mm.Mprotect(a, Page, Protection.Read);
        _mm.Mprotect(a, Page, Protection.ReadWrite);
        _mm.Write(a, [1]);

        child.ShouldHold(a, 1, seed: 1);
        child.Exit();
    }

    // ---- errors: each leaves everything as it was ----

    [Theory]
    [InlineData(0x123UL, 1UL, Protection.Read)]
    [InlineData(0x800UL, 0UL, Protection.Read)]
    [InlineData(0UL, 1UL, (Protection)8)]
    [InlineData(0UL, 1UL, (Protection)(-1))]
    public void InvalidArgumentsFailWithEinvalAndChangeNothing(ulong offset, ulong pages, Protection protection)
    {
        MmSnapshot before = PopulatedSnapshot();

        ((Action)(() => _mm.Mprotect(Base + offset, pages * Page, protection))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
    }

    [Fact]
    public void ALengthWhoseEndWrapsFailsWithEnomemAndChangesNothing()
    {
        MmSnapshot before = PopulatedSnapshot();
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        ((Action)(() => _mm.Mprotect(Base, ulong.MaxValue, Protection.Read))).ShouldFailWith(Errno.ENOMEM);

        before.ShouldBeUnchanged();
        chain.Calls.Should().BeEmpty();
    }

    /// <summary>[Base, +4 pages) read-write and written, a hole, then [Base + 6 pages, +4 pages) shared and written.</summary>
    private MmSnapshot PopulatedSnapshot()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        ulong b = _mm.Mmap(Base + (6 * Page), 4 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, a, 4, seed: 1);
        Fill(_mm, b, 4, seed: 2);
        return MmSnapshot.Capture(_mm, (Base - Page, Base + (12 * Page)));
    }
}
