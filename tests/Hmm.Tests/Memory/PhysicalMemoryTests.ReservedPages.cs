using FluentAssertions;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Hmm.Tests.Memory;

// Reserved pages (frame 0 and the zero page) never reach the allocator, and their data is read-only to every
// public path; options are validated before anything is built.
public partial class PhysicalMemoryTests
{
    public static TheoryData<ulong> ReservedFrames => new() { 0, 1 };

    [Fact]
    public void PutOfTheZeroPageIsAKernelBugAndLeavesItsRefcount()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        ulong free = memory.FreeRamPages;
        MemorySnapshot before = MemorySnapshot.Take(memory, new Pfn(0), PhysicalMemory.ZeroPage);

        Action put = () => memory.PutPage(PhysicalMemory.ZeroPage);

        put.Should().Throw<KernelBugException>().WithMessage("*Bad page state*reserved*");
        memory.PageRefCount(PhysicalMemory.ZeroPage).Should().Be(1);
        memory.FreeRamPages.Should().Be(free, "the zero page did not reach the allocator");
        MemorySnapshot.Take(memory, new Pfn(0), PhysicalMemory.ZeroPage).Should().Be(before);
    }

    [Fact]
    public void PutOfFrameZeroIsAKernelBugAndLeavesItsRefcount()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        ulong free = memory.FreeRamPages;

        Action put = () => memory.PutPage(new Pfn(0));

        put.Should().Throw<KernelBugException>();
        memory.PageRefCount(new Pfn(0)).Should().Be(0);
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void PutOfAZeroPageReferenceTakenWithGetPageIsFineButTheNextPutIsABug()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        ulong free = memory.FreeRamPages;

        memory.GetPage(PhysicalMemory.ZeroPage);
        memory.PutPage(PhysicalMemory.ZeroPage);
        Action extra = () => memory.PutPage(PhysicalMemory.ZeroPage);

        extra.Should().Throw<KernelBugException>();
        memory.PageRefCount(PhysicalMemory.ZeroPage).Should().Be(1);
        memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void ABulkPutThatWouldFreeTheZeroPageIsAKernelBugAndGivesEveryReferenceBack()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        ulong free = memory.FreeRamPages;
        memory.GetPageRefs(PhysicalMemory.ZeroPage, 1024);

        // The internal path of UnpinUserPages: dropping more than the pin leaves the reserved page at zero.
        Action put = () => memory.PutPageRefs(PhysicalMemory.ZeroPage, 1025);

        put.Should().Throw<KernelBugException>();
        memory.PageRefCount(PhysicalMemory.ZeroPage).Should().Be(1025);
        memory.FreeRamPages.Should().Be(free);
        memory.PutPageRefs(PhysicalMemory.ZeroPage, 1024);
        memory.PageRefCount(PhysicalMemory.ZeroPage).Should().Be(1);
    }

    [Fact]
    public void AllocatePageNeverHandsOutAReservedFrameEvenAfterRefusedPuts()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 2);
        memory.Invoking(m => m.PutPage(PhysicalMemory.ZeroPage)).Should().Throw<KernelBugException>();
        memory.Invoking(m => m.PutPage(new Pfn(0))).Should().Throw<KernelBugException>();

        var pages = new List<Pfn>();
        while (memory.TryAllocatePage(out Pfn pfn))
        {
            pages.Add(pfn);
        }

        pages.Should().HaveCount((int)memory.RamPages);
        pages.Should().NotContain(new Pfn(0)).And.NotContain(PhysicalMemory.ZeroPage);
        pages.Should().OnlyHaveUniqueItems();
    }

    [Fact]
    public void TheRamAllocatorRefusesAFrameItDoesNotManage()
    {
        var allocator = new RamAllocator(firstPfn: 2, endPfn: 16);
        ulong free = allocator.FreePages;

        Action freeZero = () => allocator.Free(new Pfn(1));
        Action freeBeyond = () => allocator.Free(new Pfn(16));

        freeZero.Should().Throw<KernelBugException>();
        freeBeyond.Should().Throw<KernelBugException>();
        allocator.FreePages.Should().Be(free);
    }

    [Theory]
    [MemberData(nameof(ReservedFrames))]
    public void PageDataOfAReservedPageIsRefusedWithEpermAndChangesNothing(ulong frame)
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        MemorySnapshot before = MemorySnapshot.Take(memory, new Pfn(frame));

        Action write = () => memory.PageData(new Pfn(frame));

        write.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EPERM);
        MemorySnapshot.Take(memory, new Pfn(frame)).Should().Be(before);
        memory.ReadPageData(new Pfn(frame)).ToArray().Should().OnlyContain(b => b == 0);
    }

    [Fact]
    public void ReadPageDataReadsEveryPresentPageAndTheZeroPageAsZeros()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        memory.PageData(pfn).Fill(0x3C);

        memory.ReadPageData(pfn).ToArray().Should().OnlyContain(b => b == 0x3C);
        memory.ReadPageData(PhysicalMemory.ZeroPage).Length.Should().Be(PageSize.Bytes);
        memory.ReadPageData(PhysicalMemory.ZeroPage).ToArray().Should().OnlyContain(b => b == 0);
    }

    [Fact]
    public void ReadPageDataOfAFrameWithoutStructPageIsEfaultAndInMetadataOnlyModeEopnotsupp()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        PhysicalMemory metadataOnly = TestKit.NewMemory(storePageData: false);

        Action absent = () => memory.ReadPageData(Pfn.FromPhysicalAddress(TestKit.DeviceBase));
        Action noData = () => metadataOnly.ReadPageData(PhysicalMemory.ZeroPage);

        absent.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
        noData.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EOPNOTSUPP);
    }

    [Fact]
    public void UntouchedAnonymousMemoryStillReadsZerosAfterEveryRefusedWriteOfTheZeroPage()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        memory.Invoking(m => m.PageData(PhysicalMemory.ZeroPage)).Should().Throw<HmmException>();
        memory.Invoking(m => m.PutPage(PhysicalMemory.ZeroPage)).Should().Throw<KernelBugException>();
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, 4 * (ulong)PageSize.Bytes, Protection.Read | Protection.Write, MapFlags.Private | MapFlags.Anonymous);
        var read = new byte[4 * PageSize.Bytes];

        mm.Read(a, read);

        read.Should().OnlyContain(b => b == 0);
        mm.ReadPte(a).Pfn.Should().Be(PhysicalMemory.ZeroPage);
        Pfn fresh = memory.AllocatePage();
        fresh.Should().NotBe(PhysicalMemory.ZeroPage);
        mm.Exit();
    }

    [Fact]
    public void ANullLoggerIsRefusedAtConstructionWithArgumentNullException()
    {
        Action create = () => _ = new PhysicalMemory(new PhysicalMemoryOptions { Logger = null! });

        create.Should().Throw<ArgumentNullException>().WithMessage("*Logger*");
    }

    [Fact]
    public void OptionsAreAllCheckedBeforeAnyIsUsed()
    {
        // Both options are bad: whichever is reported, nothing was built (no logger call, no exception from later use).
        var logger = new CountingLogger();
        Action create = () => _ = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 3, Logger = logger });

        create.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        logger.Calls.Should().Be(0);
    }

    private sealed class CountingLogger : ILogger
    {
        public int Calls { get; private set; }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) => Calls++;
    }
}
