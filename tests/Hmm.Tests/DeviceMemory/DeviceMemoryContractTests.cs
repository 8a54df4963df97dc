using System.Reflection;
using FluentAssertions;
using Hmm.Tests.Memory;
using Xunit;

namespace Hmm.Tests.DeviceMemory;

/// <summary>The public contract of the device-memory layer: what a driver may observe and call, and how each misuse is refused.</summary>
public class DeviceMemoryContractTests
{
    private readonly PhysicalMemory _memory = TestKit.NewMemory(ramMiB: 4);
    private readonly TestDriver _driver = new();

    // ---- Lifetime: observable, not drivable ------------------------------------------------------------

    [Fact]
    public void TheLifetimeReferenceIsNotPartOfThePublicSurface()
    {
        typeof(LifetimeRef).IsPublic.Should().BeFalse();
        typeof(DevPagemap).GetProperty("Ref", BindingFlags.Public | BindingFlags.Instance).Should().BeNull();
        typeof(DevPagemap).GetMethod("Put", BindingFlags.Public | BindingFlags.Instance).Should().BeNull();
        typeof(Memremap).GetMethod("GetDevPagemap", BindingFlags.Public | BindingFlags.Static).Should().BeNull();
    }

    [Fact]
    public void StateIsDerivedFromTheLifetimeReferenceSoItNeverDisagreesWithLookups()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
        pagemap.State.Should().Be(DevPagemapState.Live);
        using (DevPagemapReference live = DevPagemap.Get(_memory, range.StartPfn))
        {
            live.HasValue.Should().BeTrue();
        }

        // A kill by any path (here the internal one directly) is what State reports.
        pagemap.Ref.Kill();

        pagemap.State.Should().Be(DevPagemapState.Dying);
        DevPagemap.Get(_memory, range.StartPfn).HasValue.Should().BeFalse();
    }

    [Fact]
    public void ReferenceCountObservesPagesAndLookups()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));

        pagemap.ReferenceCount.Should().Be(1, "the initial reference");
        pagemap.InitDevicePage(range.StartPfn);
        pagemap.ReferenceCount.Should().Be(2);
        using (DevPagemap.Get(_memory, range.StartPfn + 1))
        {
            pagemap.ReferenceCount.Should().Be(3);
        }

        pagemap.ReferenceCount.Should().Be(2);
        _memory.PutPage(range.StartPfn);
        pagemap.ReferenceCount.Should().Be(1);
    }

    // ---- Ranges: a read-only view over the pagemap's own copy -----------------------------------------

    [Fact]
    public void RangesCannotBeWrittenThroughACast()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));

        (pagemap.Ranges is PhysicalRange[]).Should().BeFalse("the internal array is not handed out");
        Action write = () => ((IList<PhysicalRange>)pagemap.Ranges)[0] = new PhysicalRange(0, TestKit.MiB * 2);

        write.Should().Throw<NotSupportedException>();
        pagemap.Ranges.Should().Equal(range);
        pagemap.Ranges.Should().BeSameAs(pagemap.Ranges, "the view is created once");
    }

    [Fact]
    public async Task MutatingTheOptionsRangesAfterRegistrationChangesNothing()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        var ranges = new List<PhysicalRange> { range };
        DevPagemap pagemap = Memremap.Map(_memory, new DevPagemapOptions
        {
            Type = MemoryType.DevicePrivate,
            Ranges = ranges,
            Owner = _driver.Owner,
            Ops = _driver,
        });
        Pfn ramPage = _memory.AllocatePage();

        ranges[0] = new PhysicalRange(0, 2 * TestKit.MiB);
        ranges.Add(TestKit.DeviceRange(4));
        await Memremap.UnmapAsync(pagemap).WaitAsync(TestKit.Timeout);

        pagemap.Ranges.Should().Equal(range);
        _memory.IsPresent(range.StartPfn).Should().BeFalse("teardown removed the registered range");
        _memory.IsPresent(ramPage).Should().BeTrue("System RAM was not touched");
        _memory.PageRefCount(ramPage).Should().Be(1);
    }

    // ---- page_pgmap: no reference --------------------------------------------------------------------------

    [Fact]
    public void OfPageReadsTheOwnerOfADevicePageWithoutAReference()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
        pagemap.InitDevicePage(range.StartPfn);
        long refs = pagemap.ReferenceCount;

        DevPagemap? found = DevPagemap.OfPage(_memory, range.StartPfn);
        DevPagemap? free = DevPagemap.OfPage(_memory, range.StartPfn + 5);

        found.Should().BeSameAs(pagemap);
        found!.Owner.Should().BeSameAs(_driver.Owner);
        free.Should().BeSameAs(pagemap, "a free device page still belongs to its pagemap");
        pagemap.ReferenceCount.Should().Be(refs, "no reference was taken");
        _memory.PageRefCount(range.StartPfn).Should().Be(1);
    }

    [Fact]
    public void OfPageIsNullForRamAndTheZeroPageAndEfaultWithoutStructPage()
    {
        Pfn ram = _memory.AllocatePage();

        DevPagemap.OfPage(_memory, ram).Should().BeNull();
        DevPagemap.OfPage(_memory, PhysicalMemory.ZeroPage).Should().BeNull();
        Action absent = () => DevPagemap.OfPage(_memory, Pfn.FromPhysicalAddress(TestKit.DeviceBase));
        Action noMemory = () => DevPagemap.OfPage(null!, ram);

        absent.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
        noMemory.Should().Throw<ArgumentNullException>();
    }

    [Fact]
    public async Task OfPageStillAnswersWhileThePagemapIsDying()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
        pagemap.InitDevicePage(range.StartPfn);
        Task teardown = Memremap.UnmapAsync(pagemap);

        DevPagemap.OfPage(_memory, range.StartPfn).Should().BeSameAs(pagemap);
        DevPagemap.Get(_memory, range.StartPfn).HasValue.Should().BeFalse("get_dev_pagemap refuses a dying pagemap");

        _memory.PutPage(range.StartPfn);
        await teardown.WaitAsync(TestKit.Timeout);
    }

    [Fact]
    public void OfPageAndGetAllocateNothing()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
        Pfn pfn = range.StartPfn + 7;
        int sum = 0;

        long bytes = AllocationProbe.FewestBytesAllocated(() =>
        {
            sum = 0;   // the probe may run the window more than once
            for (int i = 0; i < 1000; i++)
            {
                sum += DevPagemap.OfPage(_memory, pfn)!.Id;
                using DevPagemapReference lookup = DevPagemap.Get(_memory, pfn);
                sum += lookup.Pagemap!.Id;
            }
        });

        bytes.Should().Be(0);
        sum.Should().Be(2000 * pagemap.Id);
        pagemap.ReferenceCount.Should().Be(1);
    }

    // ---- get_dev_pagemap / put_dev_pagemap as one handle ------------------------------------------------

    [Fact]
    public void AnEmptyHandleHoldsNothingAndItsDisposeDoesNothing()
    {
        DevPagemapReference none = DevPagemap.Get(_memory, _memory.AllocatePage());

        none.HasValue.Should().BeFalse();
        none.Pagemap.Should().BeNull();
        none.Dispose();
        default(DevPagemapReference).Dispose();
    }

    [Fact]
    public void ASecondDisposeOfTheSameHandleIsASecondPutCaughtWhenItWouldDropTheInitialReference()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
        DevPagemapReference lookup = DevPagemap.Get(_memory, range.StartPfn);
        lookup.Dispose();

        Action again = lookup.Dispose;

        again.Should().Throw<KernelBugException>();
        pagemap.ReferenceCount.Should().Be(1);
        pagemap.State.Should().Be(DevPagemapState.Live);
    }

    // ---- Unbind: validation first, timeouts, a second unbind --------------------------------------------

    public static TheoryData<TimeSpan> NoLimit => new()
    {
        Timeout.InfiniteTimeSpan,
        TimeSpan.MaxValue,
        TimeSpan.FromMilliseconds(int.MaxValue + 1.0),
        TimeSpan.FromDays(30),
    };

    [Theory]
    [MemberData(nameof(NoLimit))]
    public void UnbindWithoutALimitWaitsForTheTeardown(TimeSpan timeout)
    {
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(device, _driver.PrivateOptions(range));

        device.Unbind(timeout);

        device.IsBound.Should().BeFalse();
        pagemap.State.Should().Be(DevPagemapState.Removed);
    }

    [Theory]
    [InlineData(-1L)]
    [InlineData(-20_000L)]
    [InlineData(long.MinValue)]
    public void UnbindWithANegativeTimeoutIsEinvalBeforeAnythingStarts(long ticks)
    {
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(device, _driver.PrivateOptions(range));
        int released = 0;
        device.AddAction(() =>
        {
            released++;
            return Task.CompletedTask;
        });
        MemorySnapshot before = MemorySnapshot.Take(_memory, TestKit.Probes(range));

        Action unbind = () => device.Unbind(TimeSpan.FromTicks(ticks));

        unbind.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        device.IsBound.Should().BeTrue();
        released.Should().Be(0);
        pagemap.State.Should().Be(DevPagemapState.Live);
        MemorySnapshot.Take(_memory, TestKit.Probes(range)).Should().Be(before);
        device.Unbind(TestKit.Timeout);
        released.Should().Be(1);
    }

    [Fact]
    public async Task ASecondUnbindJoinsTheFirstAndRunsNoActionTwice()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(device, _driver.PrivateOptions(range));
        pagemap.InitDevicePage(range.StartPfn);
        int released = 0;
        device.AddAction(() =>
        {
            Interlocked.Increment(ref released);
            return Task.CompletedTask;
        });

        Task first = device.UnbindAsync();
        Task second = device.UnbindAsync();
        second.IsCompleted.Should().BeFalse("the second unbind waits for the first's teardown");

        _memory.PutPage(range.StartPfn);
        await Task.WhenAll(first, second).WaitAsync(TestKit.Timeout);
        device.Unbind(TestKit.Timeout);
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);

        released.Should().Be(1);
        pagemap.State.Should().Be(DevPagemapState.Removed);
    }

    [Fact]
    public async Task TheTeardownTimeoutNamesAnOutstandingLookup()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(device, _driver.PrivateOptions(range));
        DevPagemapReference lookup = DevPagemap.Get(_memory, range.StartPfn);

        Action unbind = () => device.Unbind(TimeSpan.FromMilliseconds(20));

        DeviceTeardownTimeoutException error = unbind.Should().Throw<DeviceTeardownTimeoutException>().Which;
        error.ReferencedPages.Should().BeEmpty();
        error.OutstandingLookups.Should().Equal(new PagemapLookups(pagemap.Id, pagemap.Name, 1));
        error.Message.Should().Contain("0 device page(s) still referenced")
            .And.Contain("1 pagemap lookup(s) not put")
            .And.Contain($"pagemap {pagemap.Id} '{pagemap.Name}' holds 1");

        lookup.Dispose();
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);
        pagemap.State.Should().Be(DevPagemapState.Removed);
    }

    [Fact]
    public async Task TheTeardownTimeoutCountsPagesAndLookupsApartOnGenericMemory()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(device, _driver.Options(MemoryType.Generic, range));
        pagemap.InitDevicePage(range.StartPfn);
        DevPagemapReference first = DevPagemap.Get(_memory, range.StartPfn);
        DevPagemapReference second = DevPagemap.Get(_memory, range.StartPfn + 1);

        Action unbind = () => device.Unbind(TimeSpan.FromMilliseconds(20));

        DeviceTeardownTimeoutException error = unbind.Should().Throw<DeviceTeardownTimeoutException>().Which;
        error.ReferencedPages.Should().ContainSingle().Which.Pfn.Should().Be(range.StartPfn);
        error.OutstandingLookups.Should().Equal(new PagemapLookups(pagemap.Id, pagemap.Name, 2));

        first.Dispose();
        second.Dispose();
        _memory.PutPage(range.StartPfn);
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);
    }

    [Fact]
    public async Task DevmCallsOnAnUnbindingDeviceAreEnodevBeforeAnythingIsRegistered()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange held = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(device, _driver.PrivateOptions(held));
        pagemap.InitDevicePage(held.StartPfn);
        Task unbinding = device.UnbindAsync();
        PhysicalRange range = TestKit.DeviceRange(4);
        MemorySnapshot before = MemorySnapshot.Take(_memory, TestKit.Probes(range));

        Action map = () => Devm.Map(device, _driver.PrivateOptions(range));
        Action claim = () => Devm.RequestFreeRegion(device, 2 * TestKit.MiB);

        map.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENODEV);
        claim.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENODEV);
        MemorySnapshot.Take(_memory, TestKit.Probes(range)).Should().Be(before);
        _memory.FindZoneDeviceOwner(pagemap.Id + 1).Should().BeNull();
        device.Pagemaps().Should().ContainSingle().Which.Should().BeSameAs(pagemap);

        _memory.PutPage(held.StartPfn);
        await unbinding.WaitAsync(TestKit.Timeout);
    }

    // ---- Objects from another machine ---------------------------------------------------------------------

    [Fact]
    public async Task DevmUnmapOfAPagemapOfAnotherMachineIsEinvalAndChangesNothing()
    {
        PhysicalMemory other = TestKit.NewMemory(ramMiB: 4);
        var device = new ManagedDevice(_memory, "gpu0");
        var foreignDevice = new ManagedDevice(other, "gpu1");
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap mine = Devm.Map(device, _driver.PrivateOptions(range));
        DevPagemap foreign = Devm.Map(foreignDevice, _driver.PrivateOptions(range));
        MemorySnapshot before = MemorySnapshot.Take(_memory, TestKit.Probes(range));
        MemorySnapshot otherBefore = MemorySnapshot.Take(other, TestKit.Probes(range));

        Action unmap = () => Devm.UnmapAsync(device, foreign);

        unmap.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        unmap.Should().Throw<HmmException>().WithMessage("*another machine*gpu0*");
        MemorySnapshot.Take(_memory, TestKit.Probes(range)).Should().Be(before);
        MemorySnapshot.Take(other, TestKit.Probes(range)).Should().Be(otherBefore);
        mine.State.Should().Be(DevPagemapState.Live);
        foreign.State.Should().Be(DevPagemapState.Live);

        await Devm.UnmapAsync(foreignDevice, foreign).WaitAsync(TestKit.Timeout);
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);
        mine.State.Should().Be(DevPagemapState.Removed);
        foreign.State.Should().Be(DevPagemapState.Removed);
    }

    // ---- Hot paths stay small: messages are built out of line --------------------------------------------

    [Theory]
    [InlineData(typeof(LifetimeRef), "Put", new Type[0], 80)]
    [InlineData(typeof(LifetimeRef), "TryGetLive", new Type[0], 96)]
    [InlineData(typeof(PhysicalMemory), "GetPage", new[] { typeof(Pfn) }, 64)]
    [InlineData(typeof(PhysicalMemory), "PutPage", new[] { typeof(Pfn) }, 64)]
    [InlineData(typeof(PhysicalMemory), "TryGetPage", new[] { typeof(Pfn) }, 80)]
    [InlineData(typeof(PhysicalMemory), "UnlockPage", new[] { typeof(Pfn) }, 128)]
    [InlineData(typeof(PhysicalMemory), "Page", new[] { typeof(Pfn) }, 16)]
    [InlineData(typeof(PhysicalMemory), "Frame", new[] { typeof(Pfn) }, 64)]
    [InlineData(typeof(DevPagemap), "InitDevicePage", new[] { typeof(Pfn) }, 200)]
    public void HotPathsCarryNoMessageFormatting(Type type, string name, Type[] parameters, int maxIlBytes)
    {
        MethodInfo method = type.GetMethod(name, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance, parameters)!;
        byte[] il = method.GetMethodBody()!.GetILAsByteArray()!;

        il.Length.Should().BeLessThanOrEqualTo(maxIlBytes, $"{type.Name}.{name} passes values to a throw helper instead of formatting a message");
        ContainsStringLoad(il).Should().BeFalse($"{type.Name}.{name} loads no string literal");
    }

    /// <summary>Whether the IL has an <c>ldstr</c> (0x72) followed by a string token (0x70......): a message built at the call site.</summary>
    private static bool ContainsStringLoad(byte[] il)
    {
        for (int i = 0; i + 4 < il.Length; i++)
        {
            if (il[i] == 0x72 && il[i + 4] == 0x70)
            {
                return true;
            }
        }

        return false;
    }
}
