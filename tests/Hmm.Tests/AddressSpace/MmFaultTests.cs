using FluentAssertions;
using Xunit;

namespace Hmm.Tests.AddressSpace;

/// <summary>A notifier chain that records every call, installed with <c>Mm.GetOrSetNotifiers</c>.</summary>
public class MmFaultTests
{
    private const int Page = PageSize.Bytes;

    [Fact]
    public void ReadOfUntouchedAnonymousMemoryMapsTheZeroPageReadOnly()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 2);
        ulong free = memory.FreeRamPages;
        int zeroRefs = memory.PageRefCount(PhysicalMemory.ZeroPage);

        byte[] bytes = TestKit.ReadBytes(mm, a + 10, Page + 100);

        bytes.Should().OnlyContain(b => b == 0);
        foreach (ulong page in new[] { a, a + Page })
        {
            Pte pte = mm.ReadPte(page);
            pte.Kind.Should().Be(PteKind.Present);
            pte.Pfn.Should().Be(PhysicalMemory.ZeroPage);
            pte.IsWritable.Should().BeFalse();
        }

        memory.FreeRamPages.Should().Be(free, "a read of untouched memory allocates nothing");
        memory.PageRefCount(PhysicalMemory.ZeroPage).Should().Be(zeroRefs, "zero-page mappings are not counted");
        memory.Page(PhysicalMemory.ZeroPage).MapCount.Should().Be(0);
    }

    [Fact]
    public void WriteAllocatesAZeroedPageEvenWhenTheFrameWasRecycled()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, TestKit.Pattern(Page, seed: 1).Select(b => (byte)(b | 1)).ToArray());
        Pfn first = mm.ReadPte(a).Pfn;
        mm.Munmap(a, Page);
        memory.Page(first).RefCount.Should().Be(0);

        ulong b = TestKit.MapAnonymous(mm, 1);
        mm.Write(b + 100, [42]);

        mm.ReadPte(b).Pfn.Should().Be(first, "the allocator hands the freed frame out again (LIFO)");
        byte[] bytes = TestKit.ReadBytes(mm, b, Page);
        bytes[100].Should().Be(42);
        bytes[100] = 0;
        bytes.Should().OnlyContain(x => x == 0, "a recycled frame must not leak the previous owner's data");
    }

    [Fact]
    public void WriteFaultSetsUpAnExclusiveAnonymousPageFoundByRmap()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 4);
        ulong free = memory.FreeRamPages;

        mm.Write(a + (2 * Page) + 7, [1, 2, 3]);

        Pte pte = mm.ReadPte(a + (2 * Page));
        pte.Kind.Should().Be(PteKind.Present);
        pte.IsWritable.Should().BeTrue();
        pte.IsDirty.Should().BeTrue();
        ref readonly PageFrame frame = ref memory.Page(pte.Pfn);
        frame.MapCount.Should().Be(1);
        frame.RefCount.Should().Be(1);
        frame.Flags.Should().HaveFlag(PageFlags.Anon).And.HaveFlag(PageFlags.AnonExclusive);
        frame.Mapping.Should().NotBe(0UL);
        frame.Index.Should().Be(TestKit.VmaAt(mm, a).PageIndex(a + (2 * Page)));
        memory.FreeRamPages.Should().Be(free - 1);
        mm.ReadPte(a + Page).IsNone.Should().BeTrue("only the written page is faulted in");

        PageMapping mapping = Rmap.FindMappings(memory, pte.Pfn).Should().ContainSingle().Subject;
        mapping.Mm.Should().BeSameAs(mm);
        mapping.Address.Should().Be(a + (2 * Page));
        mapping.Entry.Should().Be(pte);
    }

    [Fact]
    public void WriteAfterReadBreaksTheZeroPageCopyOnWrite()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        TestKit.ReadBytes(mm, a, 1);
        mm.ReadPte(a).Pfn.Should().Be(PhysicalMemory.ZeroPage);
        int zeroRefs = memory.PageRefCount(PhysicalMemory.ZeroPage);

        mm.Write(a + 1, [9]);

        Pte pte = mm.ReadPte(a);
        pte.Pfn.Should().NotBe(PhysicalMemory.ZeroPage);
        pte.IsWritable.Should().BeTrue();
        memory.Page(pte.Pfn).MapCount.Should().Be(1);
        memory.Page(pte.Pfn).Flags.Should().HaveFlag(PageFlags.Anon);
        TestKit.ReadBytes(mm, a, 3).Should().Equal(0, 9, 0);
        TestKit.PageBytes(memory, PhysicalMemory.ZeroPage).Should().OnlyContain(b => b == 0, "the zero page is never written");
        memory.PageRefCount(PhysicalMemory.ZeroPage).Should().Be(zeroRefs);
    }

    [Fact]
    public void CopyOnWriteAfterForkCopiesTheDataAndLeavesTheOtherSideIntact()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory, "parent");
        ulong a = TestKit.MapAnonymous(parent, 2);
        byte[] original = TestKit.Pattern(2 * Page, seed: 2);
        parent.Write(a, original);
        Pfn shared0 = parent.ReadPte(a).Pfn;
        Pfn shared1 = parent.ReadPte(a + Page).Pfn;
        Mm child = parent.Fork();
        child.ReadPte(a).Pfn.Should().Be(shared0);
        parent.ReadPte(a).IsWritable.Should().BeFalse();
        child.ReadPte(a).IsWritable.Should().BeFalse();
        memory.Page(shared0).Flags.Should().NotHaveFlag(PageFlags.AnonExclusive);

        child.Write(a + 5, [0xEE]);
        parent.Write(a + Page + 6, [0xDD]);

        Pfn childCopy = child.ReadPte(a).Pfn;
        childCopy.Should().NotBe(shared0);
        parent.ReadPte(a).Pfn.Should().Be(shared0);
        Pfn parentCopy = parent.ReadPte(a + Page).Pfn;
        parentCopy.Should().NotBe(shared1);
        child.ReadPte(a + Page).Pfn.Should().Be(shared1);

        byte[] childExpected = (byte[])original.Clone();
        childExpected[5] = 0xEE;
        byte[] parentExpected = (byte[])original.Clone();
        parentExpected[Page + 6] = 0xDD;
        TestKit.ReadBytes(child, a, 2 * Page).Should().Equal(childExpected);
        TestKit.ReadBytes(parent, a, 2 * Page).Should().Equal(parentExpected);

        foreach (Pfn pfn in new[] { shared0, shared1, childCopy, parentCopy })
        {
            memory.Page(pfn).MapCount.Should().Be(1, $"{pfn} is mapped once after the COW break");
            memory.Page(pfn).RefCount.Should().Be(1, $"{pfn} holds only its mapping's reference");
        }

        // Each side now owns its page alone: the next write fault reuses it instead of copying again.
        parent.Write(a, [1]);
        parent.ReadPte(a).Pfn.Should().Be(shared0);
        child.Write(a + Page, [2]);
        child.ReadPte(a + Page).Pfn.Should().Be(shared1);

        child.Exit();
        parent.Exit();
        foreach (Pfn pfn in new[] { shared0, shared1, childCopy, parentCopy })
        {
            memory.Page(pfn).RefCount.Should().Be(0);
        }
    }

    [Fact]
    public void WriteToAnExclusivelyOwnedWriteProtectedPageReusesIt()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [1, 2, 3]);
        Pfn page = mm.ReadPte(a).Pfn;
        mm.Mprotect(a, Page, Protection.Read);
        mm.Mprotect(a, Page, Protection.ReadWrite);
        mm.ReadPte(a).IsWritable.Should().BeFalse("mprotect does not make entries writable again");
        ulong free = memory.FreeRamPages;

        mm.Write(a + 1, [7]);

        mm.ReadPte(a).Pfn.Should().Be(page);
        mm.ReadPte(a).IsWritable.Should().BeTrue();
        memory.FreeRamPages.Should().Be(free);
        TestKit.ReadBytes(mm, a, 3).Should().Equal(1, 7, 3);
    }

    [Fact]
    public void WriteToAnExclusivePageThatIsPinnedReusesItSoThePinStaysCoherent()
    {
        // The kernel reuses a PageAnonExclusive page whatever its refcount: a pin taken while the page was
        // exclusive must keep seeing the process's writes.
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [1]);
        var pinned = new Pfn[1];
        mm.PinUserPages(a, GupFlags.None, pinned).Should().Be(1);
        mm.Mprotect(a, Page, Protection.Read);
        mm.Mprotect(a, Page, Protection.ReadWrite);

        mm.Write(a, [5]);

        mm.ReadPte(a).Pfn.Should().Be(pinned[0]);
        memory.PageData(pinned[0])[0].Should().Be(5);
        mm.UnpinUserPages(pinned);
        memory.Page(pinned[0]).RefCount.Should().Be(1);
    }

    [Fact]
    public void AccessesCrossingPageBoundariesTouchEveryPage()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 5);
        byte[] data = TestKit.Pattern((3 * Page) + 2, seed: 3);

        mm.Write(a + Page - 1, data);

        for (int i = 0; i < 5; i++)
        {
            Pte pte = mm.ReadPte(a + ((ulong)i * Page));
            pte.IsWritable.Should().BeTrue($"page {i} was written");
            pte.Pfn.Should().NotBe(PhysicalMemory.ZeroPage);
        }

        TestKit.ReadBytes(mm, a + Page - 1, data.Length).Should().Equal(data);
        byte[] all = TestKit.ReadBytes(mm, a, 5 * Page);
        all.AsSpan(0, Page - 1).ToArray().Should().OnlyContain(b => b == 0);
        all.AsSpan(Page - 1, data.Length).ToArray().Should().Equal(data);
        all.AsSpan(Page - 1 + data.Length).ToArray().Should().OnlyContain(b => b == 0);
    }

    [Fact]
    public void HandleMmFaultWithoutTheMmapLockIsAKernelBugAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        Vma vma = TestKit.VmaAt(mm, a);
        ulong free = memory.FreeRamPages;

        Action fault = () => mm.HandleMmFault(vma, a, FaultFlags.Write);

        fault.Should().Throw<KernelBugException>();
        mm.ReadPte(a).IsNone.Should().BeTrue();
        memory.FreeRamPages.Should().Be(free);
    }

    [Theory]
    [InlineData(FaultFlags.None)]
    [InlineData(FaultFlags.Remote)]
    public void HandleMmFaultForAReadMapsTheZeroPage(FaultFlags flags)
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        using MmapLockGuard guard = mm.MmapReadLock();
        Vma vma = mm.FindVma(a)!;

        mm.HandleMmFault(vma, a + 123, flags).Should().Be(VmFaultResult.None);

        mm.ReadPte(a).Pfn.Should().Be(PhysicalMemory.ZeroPage);
        mm.ReadPte(a).IsWritable.Should().BeFalse();
    }

    [Theory]
    [InlineData(FaultFlags.Write)]
    [InlineData(FaultFlags.Write | FaultFlags.Remote)]
    public void HandleMmFaultForAWriteInstallsAWritablePageAndIsIdempotent(FaultFlags flags)
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        ulong free = memory.FreeRamPages;
        using MmapLockGuard guard = mm.MmapReadLock();
        Vma vma = mm.FindVma(a)!;

        mm.HandleMmFault(vma, a + 4095, flags).Should().Be(VmFaultResult.None);
        Pte pte = mm.ReadPte(a);
        mm.HandleMmFault(vma, a, flags).Should().Be(VmFaultResult.None);

        pte.IsWritable.Should().BeTrue();
        pte.IsDirty.Should().BeTrue();
        mm.ReadPte(a).Should().Be(pte, "a second fault on an accessible page changes nothing");
        memory.FreeRamPages.Should().Be(free - 1);
    }

    [Fact]
    public void SegmentationFaultOnAnUnmappedAddressChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 3);
        mm.Write(a, [1]);
        mm.Munmap(a + Page, Page);
        ulong free = memory.FreeRamPages;
        Pte[] before = TestKit.Entries(mm, a, 3);

        Action read = () => mm.Read(a + Page + 8, new byte[4]);
        Action write = () => mm.Write(a + Page + 8, [1, 2, 3]);

        read.Should().Throw<SegmentationFaultException>()
            .Where(e => e.Address == a + Page + 8 && !e.IsWrite && !e.IsBusError && e.Error == Errno.EFAULT);
        write.Should().Throw<SegmentationFaultException>()
            .Where(e => e.Address == a + Page + 8 && e.IsWrite && !e.IsBusError);
        TestKit.Entries(mm, a, 3).Should().Equal(before);
        memory.FreeRamPages.Should().Be(free);
        TestKit.ReadBytes(mm, a, 1).Should().Equal(1);
    }

    [Fact]
    public void WriteToAReadOnlyAreaIsASegmentationFaultAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 2);
        mm.Write(a, [4, 5, 6]);
        mm.Mprotect(a, 2 * Page, Protection.Read);
        ulong free = memory.FreeRamPages;
        Pte[] before = TestKit.Entries(mm, a, 2);

        Action writePresent = () => mm.Write(a, [9]);
        Action writeUntouched = () => mm.Write(a + Page, [9]);

        writePresent.Should().Throw<SegmentationFaultException>().Where(e => e.IsWrite && !e.IsBusError && e.Address == a);
        writeUntouched.Should().Throw<SegmentationFaultException>().Where(e => e.IsWrite && !e.IsBusError);
        TestKit.Entries(mm, a, 2).Should().Equal(before);
        memory.FreeRamPages.Should().Be(free);
        TestKit.ReadBytes(mm, a, 3).Should().Equal(4, 5, 6);
    }

    [Fact]
    public void ReadOfProtNoneIsASegmentationFaultAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 2, Protection.None);
        ulong free = memory.FreeRamPages;

        Action read = () => mm.Read(a + Page, new byte[1]);
        Action write = () => mm.Write(a, [1]);

        read.Should().Throw<SegmentationFaultException>().Where(e => !e.IsWrite && !e.IsBusError && e.Address == a + Page);
        write.Should().Throw<SegmentationFaultException>().Where(e => e.IsWrite && !e.IsBusError);
        TestKit.Entries(mm, a, 2).Should().OnlyContain(p => p.IsNone);
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void ProtNoneOverWrittenMemoryHidesItUntilAccessIsRestored()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [3]);
        mm.Mprotect(a, Page, Protection.None);

        Action read = () => mm.Read(a, new byte[1]);

        read.Should().Throw<SegmentationFaultException>().Where(e => !e.IsBusError);
        mm.Mprotect(a, Page, Protection.Read);
        TestKit.ReadBytes(mm, a, 1).Should().Equal(3);
    }

    [Theory]
    [InlineData(Mm.TaskSize, 1)]
    [InlineData(Mm.TaskSize - 1, 2)]
    [InlineData(ulong.MaxValue, 1)]
    public void AccessBeyondTaskSizeIsASegmentationFault(ulong address, int length)
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        mm.Mmap(Mm.TaskSize - Page, Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
        ulong free = memory.FreeRamPages;

        Action read = () => mm.Read(address, new byte[length]);
        Action write = () => mm.Write(address, new byte[length]);

        read.Should().Throw<SegmentationFaultException>().Where(e => !e.IsWrite && !e.IsBusError);
        write.Should().Throw<SegmentationFaultException>().Where(e => e.IsWrite && !e.IsBusError);
        mm.ReadPte(Mm.TaskSize - Page).IsNone.Should().BeTrue();
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void AccessToAFileMappingBeyondTheEndOfTheFileIsABusError()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", Page + 100);
        file.Write(Page + 10, [8]);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, 3 * Page, Protection.ReadWrite, MapFlags.Shared, file);
        int cached = file.CachedPages;
        ulong free = memory.FreeRamPages;

        // The last, partial page of the file is mapped whole; the page after it is not backed.
        TestKit.ReadBytes(mm, a + Page + 10, 1).Should().Equal(8);
        TestKit.ReadBytes(mm, a + Page + 200, 1).Should().Equal(0);
        Action read = () => mm.Read(a + (2 * Page) + 1, new byte[1]);
        Action write = () => mm.Write(a + (2 * Page), [1]);
        Action straddle = () => mm.Write(a + (2 * Page) - 2, [1, 2, 3, 4]);

        read.Should().Throw<SegmentationFaultException>().Where(e => e.IsBusError && !e.IsWrite && e.Address == a + (2 * Page) + 1);
        write.Should().Throw<SegmentationFaultException>().Where(e => e.IsBusError && e.IsWrite);
        straddle.Should().Throw<SegmentationFaultException>().Where(e => e.IsBusError && e.Address == a + (2 * Page));
        mm.ReadPte(a + (2 * Page)).IsNone.Should().BeTrue();
        file.CachedPages.Should().Be(cached, "no page is cached beyond the end of the file");
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void PrivateFileMappingBeyondTheEndOfTheFileIsABusErrorToo()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", 100);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Private, file);
        ulong free = memory.FreeRamPages;

        Action write = () => mm.Write(a + Page, [1]);

        write.Should().Throw<SegmentationFaultException>().Where(e => e.IsBusError);
        mm.ReadPte(a + Page).IsNone.Should().BeTrue();
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void InjectedAllocationFailureOnAWriteFaultIsEnomemAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        ulong free = memory.FreeRamPages;
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation);

        Action write = () => mm.Write(a, [1]);

        write.Should().Throw<HmmException>().Where(e => e.Error == Errno.ENOMEM);
        mm.ReadPte(a).IsNone.Should().BeTrue();
        memory.FreeRamPages.Should().Be(free);
        mm.Write(a, [1]);
        TestKit.ReadBytes(mm, a, 1).Should().Equal(1);
    }

    [Fact]
    public void AllocationFailureBreakingTheZeroPageKeepsTheZeroPageMapped()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        TestKit.ReadBytes(mm, a, 1);
        Pte before = mm.ReadPte(a);
        ulong free = memory.FreeRamPages;
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation);

        Action write = () => mm.Write(a, [1]);

        write.Should().Throw<HmmException>().Where(e => e.Error == Errno.ENOMEM);
        mm.ReadPte(a).Should().Be(before);
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void AllocationFailureBreakingCopyOnWriteAfterForkChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory);
        ulong a = TestKit.MapAnonymous(parent, 1);
        parent.Write(a, [1, 2]);
        Mm child = parent.Fork();
        Pfn shared = parent.ReadPte(a).Pfn;
        Pte parentBefore = parent.ReadPte(a);
        Pte childBefore = child.ReadPte(a);
        ulong free = memory.FreeRamPages;
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation);

        Action write = () => child.Write(a, [9]);

        write.Should().Throw<HmmException>().Where(e => e.Error == Errno.ENOMEM);
        parent.ReadPte(a).Should().Be(parentBefore);
        child.ReadPte(a).Should().Be(childBefore);
        memory.Page(shared).RefCount.Should().Be(2);
        memory.Page(shared).MapCount.Should().Be(2);
        memory.FreeRamPages.Should().Be(free);
        TestKit.ReadBytes(child, a, 2).Should().Equal(1, 2);
    }

    [Fact]
    public void ExhaustedRamIsEnomemAndLeavesWrittenPagesIntact()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 2);
        var mm = new Mm(memory);
        int pages = (int)memory.RamPages + 8;
        ulong a = TestKit.MapAnonymous(mm, (ulong)pages);
        int written = 0;
        HmmException? failure = null;
        for (; written < pages; written++)
        {
            try
            {
                mm.Write(a + ((ulong)written * Page), [(byte)(written | 1)]);
            }
            catch (HmmException error)
            {
                failure = error;
                break;
            }
        }

        failure.Should().NotBeNull();
        failure!.Error.Should().Be(Errno.ENOMEM);
        failure.Should().NotBeOfType<SegmentationFaultException>();
        memory.FreeRamPages.Should().Be(0);
        ((ulong)written).Should().Be(memory.RamPages);
        mm.ReadPte(a + ((ulong)written * Page)).IsNone.Should().BeTrue();
        for (int i = 0; i < written; i += 37)
        {
            TestKit.ReadBytes(mm, a + ((ulong)i * Page), 1).Should().Equal((byte)(i | 1));
        }

        // Reads still work without memory: they map the zero page.
        TestKit.ReadBytes(mm, a + ((ulong)written * Page), 4).Should().OnlyContain(b => b == 0);
        mm.Munmap(a, (ulong)pages * Page);
        memory.FreeRamPages.Should().Be(memory.RamPages);
    }

    [Fact]
    public void MetadataOnlyMemoryRefusesCpuAccessWithEopnotsuppAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory(storePageData: false);
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        ulong free = memory.FreeRamPages;

        Action read = () => mm.Read(a, new byte[1]);
        Action write = () => mm.Write(a, [1]);

        read.Should().Throw<HmmException>().Where(e => e.Error == Errno.EOPNOTSUPP);
        write.Should().Throw<HmmException>().Where(e => e.Error == Errno.EOPNOTSUPP);
        mm.ReadPte(a).IsNone.Should().BeTrue();
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void MetadataOnlyMemoryStillFaultsThroughTheHandler()
    {
        PhysicalMemory memory = TestKit.NewMemory(storePageData: false);
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        using MmapLockGuard guard = mm.MmapReadLock();

        mm.HandleMmFault(mm.FindVma(a)!, a, FaultFlags.Write).Should().Be(VmFaultResult.None);

        mm.ReadPte(a).IsWritable.Should().BeTrue();
        memory.Page(mm.ReadPte(a).Pfn).Flags.Should().HaveFlag(PageFlags.Anon);
    }

    [Fact]
    public void WriteToAPrivateFileMappingCopiesThePageAndLeavesTheFileAlone()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", 2 * Page);
        file.Write(0, [1, 2, 3]);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Private, file);

        mm.Write(a + 1, [9]);
        mm.Write(a + Page, [7]);

        TestKit.ReadBytes(mm, a, 3).Should().Equal(1, 9, 3);
        var fromFile = new byte[3];
        file.Read(0, fromFile);
        fromFile.Should().Equal(1, 2, 3);
        Pfn copy = mm.ReadPte(a).Pfn;
        memory.Page(copy).Flags.Should().HaveFlag(PageFlags.Anon);
        memory.Page(copy).MapCount.Should().Be(1);
        Rmap.FindMappings(memory, copy).Should().ContainSingle().Which.Address.Should().Be(a);
        Rmap.FindMappings(memory, mm.ReadPte(a + Page).Pfn).Should().ContainSingle().Which.Address.Should().Be(a + Page);
    }

    [Fact]
    public void WriteAfterReadOfAPrivateFileMappingCopiesThePageCachePage()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var file = new SimFile(memory, "f", Page);
        file.Write(0, [1, 2, 3]);
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, Page, Protection.ReadWrite, MapFlags.Private, file);
        TestKit.ReadBytes(mm, a, 3).Should().Equal(1, 2, 3);
        Pfn cached = mm.ReadPte(a).Pfn;
        mm.ReadPte(a).IsWritable.Should().BeFalse();
        memory.Page(cached).MapCount.Should().Be(1);

        mm.Write(a, [5]);

        Pfn copy = mm.ReadPte(a).Pfn;
        copy.Should().NotBe(cached);
        memory.Page(cached).MapCount.Should().Be(0);
        memory.Page(cached).RefCount.Should().Be(1, "only the page cache holds it now");
        TestKit.ReadBytes(mm, a, 3).Should().Equal(5, 2, 3);
        var fromFile = new byte[1];
        file.Read(0, fromFile);
        fromFile[0].Should().Be(1);
        memory.Page(copy).Flags.Should().HaveFlag(PageFlags.Anon);
    }

    [Fact]
    public void CopyOnWriteBreaksAreAnnouncedAsAClearOfThePageButFirstTouchIsNot()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory);
        ulong a = TestKit.MapAnonymous(parent, 3);
        RecordingNotifierChain notifiers = RecordingNotifierChain.InstallOn(parent);

        parent.Write(a, [1]);
        TestKit.ReadBytes(parent, a + Page, 1);
        notifiers.Calls.Should().BeEmpty("filling an empty entry replaces nothing a device could mirror");

        parent.Write(a + Page, [2]);
        notifiers.Starts.Should().Equal((a + Page, a + (2 * Page), MmuNotifierEvent.Clear));
        Mm child = parent.Fork();
        notifiers.Clear();

        parent.Write(a, [3]);

        notifiers.Calls.Should().Equal(NotifierCall.Pair(a, a + Page, MmuNotifierEvent.Clear));
    }

    [Fact]
    public void UnshareFaultMakesASharedPageExclusiveWithoutMakingItWritable()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory);
        ulong a = TestKit.MapAnonymous(parent, 1);
        parent.Write(a, [1]);
        Pfn shared = parent.ReadPte(a).Pfn;
        Mm child = parent.Fork();

        using (parent.MmapReadLock())
        {
            parent.HandleMmFault(parent.FindVma(a)!, a, FaultFlags.Unshare | FaultFlags.Remote).Should().Be(VmFaultResult.None);
        }

        Pte pte = parent.ReadPte(a);
        pte.Pfn.Should().NotBe(shared);
        pte.IsWritable.Should().BeFalse();
        memory.Page(pte.Pfn).Flags.Should().HaveFlag(PageFlags.AnonExclusive);
        TestKit.ReadBytes(parent, a, 1).Should().Equal(1);
        parent.Write(a, [2]);
        parent.ReadPte(a).Pfn.Should().Be(pte.Pfn, "the unshared page is reused by the next write");
        TestKit.ReadBytes(child, a, 1).Should().Equal(1);
    }

    [Fact]
    public void RacingFirstTouchesOfTheSamePagesInstallOnePageEachAndLoseNoWrite()
    {
        const int Pages = 128;
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, Pages);
        ulong free = memory.FreeRamPages;
        using var start = new Barrier(2);

        void Touch(int thread)
        {
            start.SignalAndWait();
            for (int p = 0; p < Pages; p++)
            {
                ulong page = a + ((ulong)p * Page);
                if (((p + thread) & 1) == 0)
                {
                    TestKit.ReadBytes(mm, page, 1);
                }

                mm.Write(page + (ulong)thread, [(byte)(thread + 1)]);
            }
        }

        Parallel.Invoke(() => Touch(0), () => Touch(1));

        memory.FreeRamPages.Should().Be(free - Pages, "exactly one page per address survives the races");
        for (int p = 0; p < Pages; p++)
        {
            ulong page = a + ((ulong)p * Page);
            TestKit.ReadBytes(mm, page, 2).Should().Equal([1, 2], $"both writes to page {p} are kept");
            Pfn pfn = mm.ReadPte(page).Pfn;
            memory.Page(pfn).MapCount.Should().Be(1);
            memory.PageRefCount(pfn).Should().Be(1);
        }
    }

    [Fact]
    public void RacingCopyOnWriteBreaksOfTheSamePagesCopyOnceAndLoseNoWrite()
    {
        const int Pages = 64;
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory, "parent");
        ulong a = TestKit.MapAnonymous(parent, Pages);
        parent.Write(a, TestKit.Pattern(Pages * Page, seed: 7));
        byte[] original = TestKit.ReadBytes(parent, a, Pages * Page);
        Mm child = parent.Fork();
        Pfn[] shared = [.. Enumerable.Range(0, Pages).Select(p => parent.ReadPte(a + ((ulong)p * Page)).Pfn)];
        ulong free = memory.FreeRamPages;
        using var start = new Barrier(2);

        void Write(int thread)
        {
            start.SignalAndWait();
            for (int p = 0; p < Pages; p++)
            {
                parent.Write(a + ((ulong)p * Page) + 8 + (ulong)thread, [(byte)(0xF0 + thread)]);
            }
        }

        Parallel.Invoke(() => Write(0), () => Write(1));

        memory.FreeRamPages.Should().Be(free - Pages, "each page is copied once; a losing copy is freed");
        for (int p = 0; p < Pages; p++)
        {
            ulong page = a + ((ulong)p * Page);
            TestKit.ReadBytes(parent, page + 8, 2).Should().Equal([0xF0, 0xF1], $"both writes to page {p} are kept");
            TestKit.ReadBytes(child, page, Page).Should().Equal(original.AsSpan(p * Page, Page).ToArray());
            memory.Page(shared[p]).MapCount.Should().Be(1);
            memory.PageRefCount(shared[p]).Should().Be(1);
        }

    }

    [Fact]
    public void AccessAfterExitIsEsrch()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [1]);
        mm.Exit();

        Action read = () => mm.Read(a, new byte[1]);

        read.Should().Throw<HmmException>().Where(e => e.Error == Errno.ESRCH);
        memory.FreeRamPages.Should().Be(memory.RamPages);
    }
}
