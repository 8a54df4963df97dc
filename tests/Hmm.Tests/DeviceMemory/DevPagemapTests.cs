using FluentAssertions;
using Hmm.Tests.Memory;
using Xunit;

namespace Hmm.Tests.DeviceMemory;

public class DevPagemapTests
{
    private readonly PhysicalMemory _memory = TestKit.NewMemory(ramMiB: 4);
    private readonly TestDriver _driver = new();
    private readonly PhysicalRange _range = TestKit.DeviceRange(0, lengthMiB: 4);
    private readonly DevPagemap _pagemap;

    public DevPagemapTests()
    {
        _pagemap = Memremap.Map(_memory, _driver.PrivateOptions(_range));
    }

    [Fact]
    public void PagemapRecordsItsRegistration()
    {
        _pagemap.Name.Should().Be("test-DevicePrivate");
        _pagemap.Ranges.Should().Equal(_range);
        _pagemap.PageCount.Should().Be(1024);
        _pagemap.Contains(_range.StartPfn).Should().BeTrue();
        _pagemap.Contains(new Pfn(_range.StartPfn.Value - 1)).Should().BeFalse();
        _pagemap.Contains(_range.StartPfn + 1024).Should().BeFalse();
    }

    [Fact]
    public void InitDevicePageHandsOutALockedPageWithOneReferenceAndTakesALifetimeReference()
    {
        Pfn pfn = _range.StartPfn + 10;

        _pagemap.InitDevicePage(pfn);

        _memory.Page(pfn).RefCount.Should().Be(1);
        _memory.Page(pfn).IsLocked.Should().BeTrue();
        _memory.Page(pfn).Flags.Should().Be(PageFlags.ZoneDevice | PageFlags.Locked);
        _memory.Page(pfn).PagemapId.Should().Be(_pagemap.Id);
        _pagemap.ReferenceCount.Should().Be(2);
        _memory.Page(pfn + 1).RefCount.Should().Be(0, "only the given page is handed out");
    }

    [Fact]
    public void InitDevicePageNeverSharesItsLockWithAnEvictionThatTrylocksThePage()
    {
        // migrate_device_range takes a reference and then trylocks each device page. If a page handed to the driver
        // were published (refcount 1) before it was locked, the eviction's trylock could win in between, and both
        // would believe they hold the lock: each unlock would then release the other's. Bounded, no timing asserted.
        // The driver hands out pages from its free list (the lowest frame first, and a freed page goes back on top),
        // so the evictor's page comes round again and again.
        Pfn pfn = _range.StartPfn;
        const int Rounds = 100_000;
        _driver.AddFreePages(_pagemap);
        Exception? failure = null;
        var driver = new Thread(() =>
        {
            try
            {
                for (int i = 0; i < Rounds; i++)
                {
                    _driver.TryAllocate(_pagemap, out Pfn page).Should().BeTrue();
                    _memory.UnlockPage(page);
                    _memory.PutPage(page);
                }
            }
            catch (Exception error) when (error is KernelBugException or HmmException)
            {
                failure = error;
            }
        });
        var evictor = new Thread(() =>
        {
            try
            {
                for (int i = 0; i < Rounds && failure is null; i++)
                {
                    if (_memory.TryGetPage(pfn))
                    {
                        if (_memory.TryLockPage(pfn))
                        {
                            _memory.UnlockPage(pfn);
                        }

                        _memory.PutPage(pfn);
                    }
                }
            }
            catch (Exception error) when (error is KernelBugException or HmmException)
            {
                failure = error;
            }
        });

        driver.Start();
        evictor.Start();
        driver.Join();
        evictor.Join();

        failure.Should().BeNull("the page lock has one holder at a time");
        _memory.PageRefCount(pfn).Should().Be(0);
        _memory.IsPageLocked(pfn).Should().BeFalse();
        _driver.FreePageCount.Should().Be((int)_pagemap.PageCount);
        _driver.PageFreeCalls.Should().HaveCount(Rounds, "every round freed the page through the driver once");
    }

    [Fact]
    public void InitDevicePageOfAForeignFrameThrowsEINVALAndChangesNothing()
    {
        PhysicalRange otherRange = TestKit.DeviceRange(256);
        DevPagemap other = Memremap.Map(_memory, _driver.PrivateOptions(otherRange));
        Pfn ramPage = _memory.AllocatePage();
        Pfn[] foreign = [otherRange.StartPfn, ramPage, _range.StartPfn + 1024, new Pfn(_range.StartPfn.Value - 1)];
        MemorySnapshot before = MemorySnapshot.Take(_memory, foreign);

        foreach (Pfn pfn in foreign)
        {
            Action init = () => _pagemap.InitDevicePage(pfn);

            init.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        }

        MemorySnapshot.Take(_memory, foreign).Should().Be(before);
        _pagemap.ReferenceCount.Should().Be(1);
        other.ReferenceCount.Should().Be(1);
    }

    [Fact]
    public void InitDevicePageOfAPageInUseThrowsEBUSYAndChangesNothing()
    {
        Pfn pfn = _range.StartPfn;
        _pagemap.InitDevicePage(pfn);
        _memory.UnlockPage(pfn);
        MemorySnapshot before = MemorySnapshot.Take(_memory, pfn);

        Action init = () => _pagemap.InitDevicePage(pfn);

        init.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EBUSY);
        MemorySnapshot.Take(_memory, pfn).Should().Be(before);
        _memory.IsPageLocked(pfn).Should().BeFalse();
        _pagemap.ReferenceCount.Should().Be(2, "the failed call gave back the lifetime reference it took");
    }

    [Fact]
    public async Task InitDevicePageAfterTeardownStartedThrowsENODEVAndChangesNothing()
    {
        Pfn held = _range.StartPfn;
        Pfn pfn = _range.StartPfn + 1;
        _pagemap.InitDevicePage(held);
        Task teardown = Memremap.UnmapAsync(_pagemap);
        MemorySnapshot before = MemorySnapshot.Take(_memory, held, pfn);

        Action init = () => _pagemap.InitDevicePage(pfn);

        init.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENODEV);
        MemorySnapshot.Take(_memory, held, pfn).Should().Be(before);
        _pagemap.ReferenceCount.Should().Be(1);

        _memory.PutPage(held);
        await teardown.WaitAsync(TestKit.Timeout);
        init.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENODEV, "a removed pagemap stays unusable");
    }

    [Fact]
    public void LastPutCallsPageFreeOnceBeforeDroppingTheLifetimeReference()
    {
        Pfn pfn = _range.StartPfn + 3;
        _pagemap.InitDevicePage(pfn);
        _memory.UnlockPage(pfn);
        _memory.GetPage(pfn);

        _memory.PutPage(pfn);
        _driver.PageFreeCalls.Should().BeEmpty("a reference is still out");
        _memory.PutPage(pfn);

        PageFreeCall call = _driver.PageFreeCalls.Should().ContainSingle().Subject;
        call.Pagemap.Should().BeSameAs(_pagemap);
        call.Pfn.Should().Be(pfn);
        call.LifetimeRefCount.Should().Be(2, "the page's lifetime reference is dropped only after PageFree returns");
        call.State.Should().Be(DevPagemapState.Live);
        call.PageRefCount.Should().Be(0);
        call.PageFlags.Should().Be(PageFlags.ZoneDevice);
        _pagemap.ReferenceCount.Should().Be(1, "then the reference is dropped");
        _memory.Page(pfn).RefCount.Should().Be(0);
    }

    [Fact]
    public void PutBelowZeroOnADevicePageThrowsKernelBugAndDoesNotFreeItAgain()
    {
        Pfn pfn = _range.StartPfn;
        _pagemap.InitDevicePage(pfn);
        _memory.UnlockPage(pfn);
        _memory.PutPage(pfn);
        MemorySnapshot before = MemorySnapshot.Take(_memory, pfn);

        Action put = () => _memory.PutPage(pfn);

        put.Should().Throw<KernelBugException>();
        MemorySnapshot.Take(_memory, pfn).Should().Be(before);
        _driver.PageFreeCalls.Should().ContainSingle();
        _pagemap.ReferenceCount.Should().Be(1);
    }

    [Fact]
    public void GetPageOnAFreeDevicePageThrowsKernelBugAndTryGetPageFails()
    {
        Pfn pfn = _range.StartPfn;
        MemorySnapshot before = MemorySnapshot.Take(_memory, pfn);

        Action get = () => _memory.GetPage(pfn);

        get.Should().Throw<KernelBugException>();
        _memory.TryGetPage(pfn).Should().BeFalse();
        MemorySnapshot.Take(_memory, pfn).Should().Be(before);
        _pagemap.ReferenceCount.Should().Be(1);
    }

    [Fact]
    public void FreeingADevicePageClearsItsMappingState()
    {
        Pfn pfn = _range.StartPfn;
        _pagemap.InitDevicePage(pfn);
        ref PageFrame frame = ref _memory.Frame(pfn);
        frame._mapping = 0x1234;
        frame._index = 7;
        Interlocked.Or(ref frame._flags, (ulong)(PageFlags.Anon | PageFlags.AnonExclusive | PageFlags.Dirty));
        _memory.SetZoneDeviceData(pfn, 99);

        _memory.PutPage(pfn);

        _memory.Page(pfn).Mapping.Should().Be(0);
        _memory.Page(pfn).Index.Should().Be(0);
        _memory.Page(pfn).Flags.Should().Be(PageFlags.ZoneDevice);
        _memory.Page(pfn).ZoneDeviceData.Should().Be(99, "zone_device_data belongs to the driver");
    }

    [Fact]
    public void AFreedDevicePageCanBeInitialisedAgain()
    {
        Pfn pfn = _range.StartPfn;
        _pagemap.InitDevicePage(pfn);
        _memory.PutPage(pfn);

        _pagemap.InitDevicePage(pfn);

        _memory.Page(pfn).RefCount.Should().Be(1);
        _memory.Page(pfn).IsLocked.Should().BeTrue();
        _pagemap.ReferenceCount.Should().Be(2);
    }

    [Fact]
    public async Task PageFreeThatThrowsStillDropsTheLifetimeReference()
    {
        Pfn pfn = _range.StartPfn;
        _pagemap.InitDevicePage(pfn);
        _driver.OnPageFree = (_, _) => throw new InvalidOperationException("driver bug");

        Action put = () => _memory.PutPage(pfn);

        put.Should().Throw<InvalidOperationException>();
        _pagemap.ReferenceCount.Should().Be(1);
        await Memremap.UnmapAsync(_pagemap).WaitAsync(TestKit.Timeout);
        _pagemap.State.Should().Be(DevPagemapState.Removed);
    }

    [Fact]
    public void SetZoneDeviceDataStoresTheDriversWord()
    {
        Pfn pfn = _range.StartPfn + 5;
        _pagemap.InitDevicePage(pfn);

        _memory.SetZoneDeviceData(pfn, 0xFEED);

        _memory.Page(pfn).ZoneDeviceData.Should().Be(0xFEED);
    }

    [Fact]
    public async Task ReferencedPagesListsThePagesStillHeldInFrameOrder()
    {
        Pfn a = _range.StartPfn + 700;
        Pfn b = _range.StartPfn + 2;
        _pagemap.InitDevicePage(a);
        _pagemap.InitDevicePage(b);
        _memory.GetPage(a);

        _pagemap.ReferencedPages().Should().Equal(
            new ReferencedPage(b, 1, _pagemap.Id, _pagemap.Name),
            new ReferencedPage(a, 2, _pagemap.Id, _pagemap.Name));
        _pagemap.ReferencedPages(max: 1).Should().ContainSingle().Which.Pfn.Should().Be(b);

        _memory.PutPage(a);
        _memory.PutPage(a);
        _memory.PutPage(b);
        _pagemap.ReferencedPages().Should().BeEmpty();
        await Memremap.UnmapAsync(_pagemap).WaitAsync(TestKit.Timeout);
        _pagemap.ReferencedPages().Should().BeEmpty("a removed pagemap has no pages");
    }

    [Fact]
    public async Task ReferencedPagesIsSafeWhileTheTeardownRemovesThePages()
    {
        // The sampler races the removal that follows the last put: it must see either pages or nothing, never a
        // frame that has gone.
        for (int round = 0; round < 50; round++)
        {
            PhysicalRange range = TestKit.DeviceRange(256);
            DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
            pagemap.InitDevicePage(range.StartPfn + 511);
            Task teardown = Memremap.UnmapAsync(pagemap);
            using var started = new ManualResetEventSlim();
            Task sampler = Task.Factory.StartNew(
                () =>
                {
                    started.Set();
                    while (pagemap.State != DevPagemapState.Removed)
                    {
                        pagemap.ReferencedPages();
                        Thread.Yield();
                    }
                },
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
            started.Wait(TestKit.Timeout);

            _memory.PutPage(range.StartPfn + 511);

            await teardown.WaitAsync(TestKit.Timeout);
            Func<Task> sample = () => sampler.WaitAsync(TestKit.Timeout);
            await sample.Should().NotThrowAsync($"round {round}");
        }
    }
}
