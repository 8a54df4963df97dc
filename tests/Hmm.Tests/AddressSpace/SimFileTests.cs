using FluentAssertions;
using Xunit;

namespace Hmm.Tests.AddressSpace;

public class SimFileTests
{
    private const int Page = PageSize.Bytes;

    [Fact]
    public void WritesAndReadsRoundTripAcrossPages()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", (3 * Page) + 10);
        byte[] data = TestKit.Pattern(5000, seed: 5);

        file.Write(4000, data);

        var back = new byte[5000];
        file.Read(4000, back);
        back.Should().Equal(data);
        var all = new byte[(3 * Page) + 10];
        file.Read(0, all);
        all.AsSpan(0, 4000).ToArray().Should().OnlyContain(b => b == 0);
        all.AsSpan(9000).ToArray().Should().OnlyContain(b => b == 0);
        file.CachedPages.Should().Be(4, "reading the whole file caches its last page too");
        file.Length.Should().Be((3UL * Page) + 10);
        file.Name.Should().Be("f");
    }

    [Fact]
    public void CachedPagesCountsDistinctPagesAndEachHoldsOneReference()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", 8 * Page);
        ulong free = memory.FreeRamPages;

        file.CachedPages.Should().Be(0);
        file.Write((2 * Page) + 5, [1]);
        file.Write((2 * Page) + 6, [2]);
        file.Read(5 * Page, new byte[Page + 1]);

        file.CachedPages.Should().Be(3);
        memory.FreeRamPages.Should().Be(free - 3);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, 8 * Page, Protection.Read, MapFlags.Shared, file);
        TestKit.ReadBytes(mm, a + (2 * Page) + 5, 2).Should().Equal(1, 2);
        Pfn page = mm.ReadPte(a + (2 * Page)).Pfn;
        ref readonly PageFrame frame = ref memory.Page(page);
        frame.Index.Should().Be(2UL);
        frame.Flags.Should().HaveFlag(PageFlags.Uptodate).And.HaveFlag(PageFlags.Dirty).And.NotHaveFlag(PageFlags.Anon);
        frame.RefCount.Should().Be(2, "the page cache and the mapping");
        frame.MapCount.Should().Be(1);
        mm.Exit();
        memory.Page(page).RefCount.Should().Be(1, "pages stay cached for the file's life");
        file.CachedPages.Should().Be(3);
    }

    [Theory]
    [InlineData(0UL, Page + 1)]
    [InlineData(Page - 1UL, 2)]
    [InlineData(Page + 1UL, 0)]
    [InlineData(ulong.MaxValue, 1)]
    [InlineData(ulong.MaxValue, 0)]
    public void AccessBeyondTheEndIsEinvalAndChangesNothing(ulong offset, int length)
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", Page);
        file.Write(Page - 1, [9]);
        ulong free = memory.FreeRamPages;

        Action write = () => file.Write(offset, new byte[length]);
        Action read = () => file.Read(offset, new byte[length]);

        write.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL);
        read.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL);
        file.CachedPages.Should().Be(1);
        memory.FreeRamPages.Should().Be(free);
        var last = new byte[1];
        file.Read(Page - 1, last);
        last[0].Should().Be(9);
    }

    [Fact]
    public void EmptyAccessAtTheEndIsAllowed()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", 100);

        file.Write(100, ReadOnlySpan<byte>.Empty);
        file.Read(100, Span<byte>.Empty);

        file.CachedPages.Should().Be(0);
    }

    [Fact]
    public void OutOfMemoryCachingThePageIsEnomemAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", Page);
        ulong free = memory.FreeRamPages;
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation);

        Action write = () => file.Write(0, [1]);

        write.Should().Throw<HmmException>().Where(e => e.Error == Errno.ENOMEM);
        file.CachedPages.Should().Be(0);
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void OutOfMemoryOnAFileFaultIsEnomemAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", Page);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, Page, Protection.Read, MapFlags.Shared, file);
        ulong free = memory.FreeRamPages;
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation);

        Action read = () => mm.Read(a, new byte[1]);

        read.Should().Throw<HmmException>().Where(e => e.Error == Errno.ENOMEM);
        mm.ReadPte(a).IsNone.Should().BeTrue();
        file.CachedPages.Should().Be(0);
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void OutOfMemoryCopyingAPrivateFilePageIsEnomemAndLeavesTheCachedPageAlone()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", Page);
        file.Write(0, [3]);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, Page, Protection.ReadWrite, MapFlags.Private, file);
        TestKit.ReadBytes(mm, a, 1).Should().Equal(3);
        Pfn cached = mm.ReadPte(a).Pfn;
        Pte before = mm.ReadPte(a);
        ulong free = memory.FreeRamPages;
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation);

        Action write = () => mm.Write(a, [4]);

        write.Should().Throw<HmmException>().Where(e => e.Error == Errno.ENOMEM);
        mm.ReadPte(a).Should().Be(before);
        memory.PageRefCount(cached).Should().Be(2);
        memory.Page(cached).MapCount.Should().Be(1);
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void SharedMappingSeesDirectWritesAndDirectReadsSeeMappedWrites()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", 2 * Page);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Shared, file);
        TestKit.ReadBytes(mm, a + Page - 1, 2).Should().Equal(0, 0);

        file.Write(Page - 1, [1, 2]);
        TestKit.ReadBytes(mm, a + Page - 1, 2).Should().Equal(1, 2);

        mm.Write(a + 10, [3, 4, 5]);
        var direct = new byte[3];
        file.Read(10, direct);
        direct.Should().Equal(3, 4, 5);
        mm.ReadPte(a).IsDirty.Should().BeTrue();
        file.CachedPages.Should().Be(2);
    }

    [Fact]
    public void PrivateMappingSeesDirectWritesOnlyUntilItCopiesThePage()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", Page);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, Page, Protection.ReadWrite, MapFlags.Private, file);
        TestKit.ReadBytes(mm, a, 1).Should().Equal(0);

        file.Write(0, [1]);
        TestKit.ReadBytes(mm, a, 1).Should().Equal([1], "the private mapping still maps the cached page");
        mm.Write(a + 1, [2]);
        file.Write(0, [3]);

        TestKit.ReadBytes(mm, a, 2).Should().Equal(1, 2);
        var direct = new byte[2];
        file.Read(0, direct);
        direct.Should().Equal(3, 0);
    }

    [Fact]
    public void TwoSharedMappingsOfDifferentProcessesAndOffsetsSeeTheSameBytes()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", 4 * Page);
        var one = new Mm(memory, "one");
        var two = new Mm(memory, "two");
        ulong a = one.Mmap(0, 4 * Page, Protection.ReadWrite, MapFlags.Shared, file);
        ulong b = two.Mmap(0, Page, Protection.ReadWrite, MapFlags.Shared, file, offset: 3 * Page);

        two.Write(b + 7, [8]);

        TestKit.ReadBytes(one, a + (3 * Page) + 7, 1).Should().Equal(8);
        one.ReadPte(a + (3 * Page)).Pfn.Should().Be(two.ReadPte(b).Pfn);
    }

    [Fact]
    public void SharedAnonymousMemoryOutlivesOneMappingWhileAnotherRemains()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory, "parent");
        ulong a = TestKit.MapAnonymous(parent, 2, shared: true);
        parent.Write(a, [1]);
        Mm child = parent.Fork("child");

        parent.Munmap(a, 2 * Page);

        TestKit.ReadBytes(child, a, 1).Should().Equal(1);
        child.Write(a + Page, [2]);
        TestKit.ReadBytes(child, a + Page, 1).Should().Equal(2);
    }

    [Fact]
    public void SharedAnonymousMemoryIsFreedWithItsLastMapping()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        ulong free = memory.FreeRamPages;
        var parent = new Mm(memory, "parent");
        ulong a = TestKit.MapAnonymous(parent, 4, shared: true);
        parent.Write(a, new byte[4 * Page]);
        Mm child = parent.Fork("child");

        parent.Munmap(a, 4 * Page);
        child.Exit();

        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void AnEmptyFileMappedIsABusErrorOnFirstTouch()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "empty", 0);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, Page, Protection.Read, MapFlags.Shared, file);

        Action read = () => mm.Read(a, new byte[1]);

        read.Should().Throw<SegmentationFaultException>().Where(e => e.IsBusError);
        file.CachedPages.Should().Be(0);
    }
}
