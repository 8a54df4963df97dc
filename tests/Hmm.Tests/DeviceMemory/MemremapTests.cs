using FluentAssertions;
using Hmm.Tests.Memory;
using Xunit;

namespace Hmm.Tests.DeviceMemory;

public class MemremapTests
{
    private const ulong MiB = TestKit.MiB;

    private readonly PhysicalMemory _memory = TestKit.NewMemory(ramMiB: 4);
    private readonly TestDriver _driver = new();

    public static TheoryData<MemoryType> AllTypes => [MemoryType.DevicePrivate, MemoryType.DeviceCoherent, MemoryType.Generic, MemoryType.PciP2PDma];

    public static TheoryData<FaultPoint, int> RegistrationFaults
    {
        get
        {
            var data = new TheoryData<FaultPoint, int>();
            foreach (FaultPoint point in new[] { FaultPoint.MemremapAddSections, FaultPoint.MemremapInitPages, FaultPoint.MemremapPublishLookup })
            {
                for (int range = 0; range < 3; range++)
                {
                    data.Add(point, range);
                }
            }

            return data;
        }
    }

    // ---- Registration -------------------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void NewPagemapPagesArePresentFreeAndOwnedByIt(MemoryType type)
    {
        PhysicalRange[] ranges = [TestKit.DeviceRange(0), TestKit.DeviceRange(256, lengthMiB: 4)];

        DevPagemap pagemap = Memremap.Map(_memory, _driver.Options(type, ranges));

        pagemap.State.Should().Be(DevPagemapState.Live);
        pagemap.Type.Should().Be(type);
        pagemap.Id.Should().BePositive();
        pagemap.Ranges.Should().Equal(ranges);
        pagemap.PageCount.Should().Be(512 + 1024);
        pagemap.Owner.Should().BeSameAs(_driver.Owner);
        pagemap.Ops.Should().BeSameAs(_driver);
        pagemap.Memory.Should().BeSameAs(_memory);
        foreach (Pfn pfn in ranges.SelectMany(TestKit.Pfns))
        {
            _memory.IsPresent(pfn).Should().BeTrue();
            ref readonly PageFrame page = ref _memory.Page(pfn);
            page.RefCount.Should().Be(0);
            page.Flags.Should().Be(PageFlags.ZoneDevice);
            page.PagemapId.Should().Be(pagemap.Id);
            pagemap.Contains(pfn).Should().BeTrue();
        }

        _memory.IsPresent(ranges[0].StartPfn + ranges[0].PageCount).Should().BeFalse("the hole after range 0 stays a hole");
        pagemap.Contains(ranges[0].StartPfn + ranges[0].PageCount).Should().BeFalse();
    }

    [Fact]
    public void DevicePageDataStartsZeroedAndPersists()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        Memremap.Map(_memory, _driver.PrivateOptions(range));

        _memory.PageData(range.StartPfn).ToArray().Should().OnlyContain(b => b == 0);
        _memory.PageData(range.StartPfn).Fill(7);

        _memory.PageData(range.StartPfn).ToArray().Should().OnlyContain(b => b == 7);
        _memory.PageData(range.StartPfn + 1).ToArray().Should().OnlyContain(b => b == 0);
    }

    [Fact]
    public void GenericMemoryNeedsNeitherOpsNorOwner()
    {
        DevPagemap pagemap = Memremap.Map(
            _memory,
            new DevPagemapOptions { Type = MemoryType.Generic, Ranges = [TestKit.DeviceRange(0)] });

        pagemap.State.Should().Be(DevPagemapState.Live);
    }

    [Fact]
    public void RegistrationWithoutRangesThrowsEINVALAndChangesNothing()
    {
        AssertRegistrationFailsAndLeavesNothing(_driver.PrivateOptions(), Errno.EINVAL, TestKit.DeviceRange(0));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(99)]
    public void RegistrationOfAnUnknownTypeThrowsEINVALAndChangesNothing(int type)
    {
        AssertRegistrationFailsAndLeavesNothing(_driver.Options((MemoryType)type, TestKit.DeviceRange(0)), Errno.EINVAL, TestKit.DeviceRange(0));
    }

    [Theory]
    [InlineData(MemoryType.DevicePrivate, false, true)]
    [InlineData(MemoryType.DevicePrivate, true, false)]
    [InlineData(MemoryType.DevicePrivate, false, false)]
    [InlineData(MemoryType.DeviceCoherent, false, true)]
    [InlineData(MemoryType.DeviceCoherent, true, false)]
    public void PrivateOrCoherentMemoryWithoutOpsOrOwnerThrowsEINVALAndChangesNothing(MemoryType type, bool withOps, bool withOwner)
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        var options = new DevPagemapOptions
        {
            Type = type,
            Ranges = [range],
            Ops = withOps ? _driver : null,
            Owner = withOwner ? _driver.Owner : null,
        };

        AssertRegistrationFailsAndLeavesNothing(options, Errno.EINVAL, range);
    }

    [Theory]
    [InlineData(TestKit.DeviceBase + (1UL << 20), 2UL << 20)]
    [InlineData(TestKit.DeviceBase + 4096, 2UL << 20)]
    [InlineData(TestKit.DeviceBase, 1UL << 20)]
    [InlineData(TestKit.DeviceBase, (2UL << 20) + 4096)]
    [InlineData(TestKit.DeviceBase, 0UL)]
    [InlineData((1UL << 46) - (2UL << 20), 4UL << 20)]
    [InlineData(1UL << 46, 2UL << 20)]
    [InlineData(ulong.MaxValue - (2UL << 20) + 1, 4UL << 20)]
    public void UnalignedEmptyOrOutOfRangeRangesThrowEINVALAndChangeNothing(ulong start, ulong length)
    {
        var bad = new PhysicalRange(start, length);

        AssertRegistrationFailsAndLeavesNothing(_driver.PrivateOptions(bad), Errno.EINVAL, TestKit.DeviceRange(0));
    }

    [Fact]
    public void ABadSecondRangeThrowsEINVALBeforeTheFirstIsRegistered()
    {
        PhysicalRange good = TestKit.DeviceRange(0);
        var bad = new PhysicalRange(TestKit.DeviceBase + (5 * MiB), 2 * MiB);

        AssertRegistrationFailsAndLeavesNothing(_driver.PrivateOptions(good, bad), Errno.EINVAL, good);
    }

    [Theory]
    [InlineData(0UL, 2UL)]
    [InlineData(2UL, 4UL)]
    [InlineData(0UL, 8UL)]
    public void RangeOverlappingSystemRamThrowsENXIOAndChangesNothing(ulong startMiB, ulong lengthMiB)
    {
        Pfn ramPage = _memory.AllocatePage();
        _memory.PageData(ramPage).Fill(0x11);
        var range = new PhysicalRange(startMiB * MiB, lengthMiB * MiB);
        MemorySnapshot before = MemorySnapshot.Take(_memory, [ramPage, new Pfn(0), new Pfn(1023), .. TestKit.Probes(range)]);

        Action register = () => Memremap.Map(_memory, _driver.PrivateOptions(range));

        register.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENXIO);
        MemorySnapshot.Take(_memory, [ramPage, new Pfn(0), new Pfn(1023), .. TestKit.Probes(range)]).Should().Be(before);
        _memory.PageData(ramPage).ToArray().Should().OnlyContain(b => b == 0x11, "RAM contents are untouched");
        _memory.FindZoneDeviceOwner(1).Should().BeNull("the failed pagemap's id was given back");
    }

    [Fact]
    public void RangeOverlappingAnotherPagemapThrowsENOMEMAndLeavesTheOtherIntact()
    {
        PhysicalRange existingRange = TestKit.DeviceRange(0, lengthMiB: 4);
        DevPagemap existing = Memremap.Map(_memory, _driver.PrivateOptions(existingRange));
        Pfn held = existingRange.StartPfn + 600;
        existing.InitDevicePage(held);
        _memory.PageData(held).Fill(0x22);
        var overlapping = new PhysicalRange(existingRange.Start + (2 * MiB), 4 * MiB);
        Pfn[] probes = [held, .. TestKit.Probes(existingRange), .. TestKit.Probes(overlapping)];
        MemorySnapshot before = MemorySnapshot.Take(_memory, probes);
        long refCount = existing.ReferenceCount;

        Action register = () => Memremap.Map(_memory, _driver.PrivateOptions(overlapping));

        register.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        MemorySnapshot.Take(_memory, probes).Should().Be(before);
        existing.ReferenceCount.Should().Be(refCount);
        existing.State.Should().Be(DevPagemapState.Live);
        _memory.PageData(held).ToArray().Should().OnlyContain(b => b == 0x22);
        using (DevPagemapReference found = DevPagemap.Get(_memory, overlapping.StartPfn))
        {
            found.Pagemap.Should().BeSameAs(existing);
        }
        _memory.FindZoneDeviceOwner(existing.Id + 1).Should().BeNull("the failed pagemap's id was given back");

        _memory.PutPage(held);
        Memremap.Unmap(existing);
        Memremap.Map(_memory, _driver.PrivateOptions(overlapping)).State.Should().Be(DevPagemapState.Live);
    }

    [Fact]
    public async Task DeviceRangeInRamsSectionComesAndGoesWithoutTouchingRam()
    {
        Pfn ramPage = _memory.AllocatePage();
        _memory.PageData(ramPage).Fill(0x55);
        var range = new PhysicalRange(8 * MiB, 2 * MiB);
        MemorySnapshot ramBefore = MemorySnapshot.Take(_memory, ramPage, new Pfn(1), new Pfn(1023));
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
        pagemap.InitDevicePage(range.StartPfn);
        _memory.PageData(range.StartPfn).Fill(0x66);

        _memory.PutPage(range.StartPfn);
        await Memremap.UnmapAsync(pagemap).WaitAsync(TestKit.Timeout);

        MemorySnapshot.Take(_memory, ramPage, new Pfn(1), new Pfn(1023)).Should().Be(ramBefore);
        _memory.PageData(ramPage).ToArray().Should().OnlyContain(b => b == 0x55);
        _memory.IsPresent(range.StartPfn).Should().BeFalse();
        _memory.HasSection(range.StartPfn).Should().BeTrue("RAM still uses the section");
        _memory.AllocatePage().Should().NotBe(ramPage);
    }

    [Fact]
    public void ManyPagemapsGetDistinctIdsAndEachLookupFindsItsOwn()
    {
        var pagemaps = new List<DevPagemap>();
        for (ulong i = 0; i < 20; i++)
        {
            pagemaps.Add(Memremap.Map(_memory, _driver.PrivateOptions(TestKit.DeviceRange(i * 2))));
        }

        pagemaps.Select(p => p.Id).Should().OnlyHaveUniqueItems();
        foreach (DevPagemap pagemap in pagemaps)
        {
            using DevPagemapReference found = DevPagemap.Get(_memory, pagemap.Ranges[0].StartPfn + 100);
            found.Pagemap.Should().BeSameAs(pagemap);
        }

        int freedId = pagemaps[3].Id;
        Memremap.Unmap(pagemaps[3]);
        Memremap.Map(_memory, _driver.PrivateOptions(TestKit.DeviceRange(256))).Id.Should().Be(freedId);
    }

    [Fact]
    public void RangeEndingAtTheTopOfThePhysicalAddressSpaceRegisters()
    {
        var range = new PhysicalRange((1UL << 46) - (2 * MiB), 2 * MiB);

        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));

        _memory.IsPresent(new Pfn(Pfn.Limit - 1)).Should().BeTrue();
        _memory.Page(new Pfn(Pfn.Limit - 1)).PagemapId.Should().Be(pagemap.Id);
    }

    [Fact]
    public void TwoOverlappingRangesOfOneRegistrationThrowENOMEMAndUnwindTheFirst()
    {
        PhysicalRange first = TestKit.DeviceRange(0, lengthMiB: 4);
        PhysicalRange second = TestKit.DeviceRange(2, lengthMiB: 4);

        AssertRegistrationFailsAndLeavesNothing(_driver.PrivateOptions(first, second), Errno.ENOMEM, first, second);
    }

    [Fact]
    public void SecondRangeOverlappingRamThrowsENXIOAndUnwindsTheFirst()
    {
        PhysicalRange first = TestKit.DeviceRange(0);
        var second = new PhysicalRange(2 * MiB, 2 * MiB);
        Pfn ramPage = _memory.AllocatePage();
        MemorySnapshot ramBefore = MemorySnapshot.Take(_memory, ramPage, second.StartPfn);

        AssertRegistrationFailsAndLeavesNothing(_driver.PrivateOptions(first, second), Errno.ENXIO, first);

        MemorySnapshot.Take(_memory, ramPage, second.StartPfn).Should().Be(ramBefore);
    }

    [Theory]
    [MemberData(nameof(RegistrationFaults))]
    public void InjectedFailureInRangeIUnwindsExactlyAndTheRangesStayRegistrable(FaultPoint point, int failingRange)
    {
        // Ranges 0 and 1 share a section with a neighbouring pagemap that must survive the unwind; range 2 has a
        // section of its own.
        PhysicalRange neighbourRange = TestKit.DeviceRange(2);
        DevPagemap neighbour = Memremap.Map(_memory, _driver.PrivateOptions(neighbourRange));
        Pfn neighbourPage = neighbourRange.StartPfn + 3;
        neighbour.InitDevicePage(neighbourPage);
        PhysicalRange[] ranges = [TestKit.DeviceRange(0), TestKit.DeviceRange(4, lengthMiB: 4), TestKit.DeviceRange(256)];
        Pfn[] probes = [.. ranges.SelectMany(TestKit.Probes), .. TestKit.Probes(neighbourRange)];
        MemorySnapshot before = MemorySnapshot.Take(_memory, probes);
        long neighbourRefs = neighbour.ReferenceCount;
        _memory.FaultInjection.FailNext(point, skip: failingRange);

        Action register = () => Memremap.Map(_memory, _driver.PrivateOptions(ranges));

        register.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        MemorySnapshot.Take(_memory, probes).Should().Be(before, $"a failure in range {failingRange} at {point} must leave nothing behind");
        foreach (Pfn pfn in ranges.SelectMany(TestKit.Probes))
        {
            DevPagemap.Get(_memory, pfn).HasValue.Should().BeFalse();
        }

        _memory.FindZoneDeviceOwner(neighbour.Id + 1).Should().BeNull("the failed pagemap's id was given back");
        neighbour.ReferenceCount.Should().Be(neighbourRefs);
        _memory.Page(neighbourPage).RefCount.Should().Be(1);

        DevPagemap again = Memremap.Map(_memory, _driver.PrivateOptions(ranges));

        again.Id.Should().Be(neighbour.Id + 1);
        foreach (Pfn pfn in ranges.SelectMany(TestKit.Probes))
        {
            _memory.Page(pfn).PagemapId.Should().Be(again.Id);
            _memory.Page(pfn).RefCount.Should().Be(0);
        }
    }

    [Theory]
    [MemberData(nameof(RegistrationFaults))]
    public void InjectedFailureAfterRangesWithPageDataLeavesNoStaleData(FaultPoint point, int failingRange)
    {
        PhysicalRange[] ranges = [TestKit.DeviceRange(0), TestKit.DeviceRange(4), TestKit.DeviceRange(256)];
        DevPagemap first = Memremap.Map(_memory, _driver.PrivateOptions(ranges));
        foreach (PhysicalRange range in ranges)
        {
            _memory.PageData(range.StartPfn).Fill(0x33);
        }

        Memremap.Unmap(first);
        _memory.FaultInjection.FailNext(point, skip: failingRange);
        Action register = () => Memremap.Map(_memory, _driver.PrivateOptions(ranges));
        register.Should().Throw<HmmException>();

        Memremap.Map(_memory, _driver.PrivateOptions(ranges));

        foreach (PhysicalRange range in ranges)
        {
            _memory.PageData(range.StartPfn).ToArray().Should().OnlyContain(b => b == 0, "a new registration starts with zeroed device memory");
        }
    }

    // ---- Lookup ------------------------------------------------------------------------------------------

    [Fact]
    public void GetReturnsTheOwnerWithAReferenceThatDisposePuts()
    {
        PhysicalRange[] ranges = [TestKit.DeviceRange(0), TestKit.DeviceRange(256)];
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(ranges));
        pagemap.ReferenceCount.Should().Be(1);

        foreach (Pfn pfn in ranges.SelectMany(TestKit.Probes))
        {
            DevPagemapReference found = DevPagemap.Get(_memory, pfn);

            found.HasValue.Should().BeTrue();
            found.Pagemap.Should().BeSameAs(pagemap);
            pagemap.ReferenceCount.Should().Be(2);
            found.Dispose();
            pagemap.ReferenceCount.Should().Be(1);
        }
    }

    [Fact]
    public void GetReturnsAnEmptyHandleForAFrameThatIsNotDeviceMemoryAndTakesNoReference()
    {
        PhysicalRange[] ranges = [TestKit.DeviceRange(0), TestKit.DeviceRange(4)];
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(ranges));
        Pfn ramPage = _memory.AllocatePage();
        Pfn[] notDevice =
        [
            new Pfn(0), ramPage, new Pfn(1023),
            new Pfn(ranges[0].StartPfn.Value - 1), ranges[0].StartPfn + 512, new Pfn(ranges[1].StartPfn.Value - 1), ranges[1].StartPfn + 512,
            Pfn.FromPhysicalAddress(TestKit.DeviceBase + TestKit.SectionBytes),
            new Pfn(Pfn.Limit), new Pfn(ulong.MaxValue),
        ];

        foreach (Pfn pfn in notDevice)
        {
            DevPagemap.Get(_memory, pfn).HasValue.Should().BeFalse($"{pfn} is not device memory");
        }

        pagemap.ReferenceCount.Should().Be(1);
    }

    [Fact]
    public void GetReturnsAnEmptyHandleForADyingPagemapAndTakesNoReference()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
        pagemap.InitDevicePage(range.StartPfn);
        Task teardown = Memremap.UnmapAsync(pagemap);

        DevPagemap.Get(_memory, range.StartPfn).HasValue.Should().BeFalse();
        DevPagemap.Get(_memory, range.StartPfn + 1).HasValue.Should().BeFalse();

        pagemap.State.Should().Be(DevPagemapState.Dying);
        pagemap.ReferenceCount.Should().Be(1, "only the page's reference is left");
        teardown.IsCompleted.Should().BeFalse();
        _memory.PutPage(range.StartPfn);
    }

    [Fact]
    public async Task ALookupReferenceKeepsTheTeardownWaiting()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
        DevPagemapReference found = DevPagemap.Get(_memory, range.StartPfn);

        Task teardown = Memremap.UnmapAsync(pagemap);

        teardown.IsCompleted.Should().BeFalse("get_dev_pagemap's reference is still out");
        _memory.IsPresent(range.StartPfn).Should().BeTrue();
        found.Dispose();
        await teardown.WaitAsync(TestKit.Timeout);
        _memory.IsPresent(range.StartPfn).Should().BeFalse();
    }

    [Fact]
    public void GetRejectsANullMemory()
    {
        Action lookup = () => DevPagemap.Get(null!, new Pfn(1));

        lookup.Should().Throw<ArgumentNullException>();
    }

    // ---- Teardown ----------------------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(AllTypes))]
    public async Task TeardownWaitsForTheLastPageReferenceAndKeepsItsFrameValidMeanwhile(MemoryType type)
    {
        PhysicalRange[] ranges = [TestKit.DeviceRange(0), TestKit.DeviceRange(256)];
        DevPagemap pagemap = Memremap.Map(_memory, _driver.Options(type, ranges));
        Pfn held = ranges[1].StartPfn + 7;
        Pfn other = ranges[0].StartPfn + 1;
        pagemap.InitDevicePage(held);
        _memory.UnlockPage(held);
        _memory.PageData(held).Fill(0x44);

        Task teardown = Memremap.UnmapAsync(pagemap);
        await Task.Delay(20);

        teardown.IsCompleted.Should().BeFalse("a device page is still referenced");
        pagemap.State.Should().Be(DevPagemapState.Dying);
        pagemap.Ref.IsDying.Should().BeTrue();
        DevPagemap.Get(_memory, held).HasValue.Should().BeFalse();
        DevPagemap.Get(_memory, other).HasValue.Should().BeFalse();
        MemorySnapshot otherBefore = MemorySnapshot.Take(_memory, other);
        Action init = () => pagemap.InitDevicePage(other);
        init.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENODEV);
        MemorySnapshot.Take(_memory, other).Should().Be(otherBefore);
        pagemap.ReferenceCount.Should().Be(1, "only the held page's reference is left");

        _memory.IsPresent(held).Should().BeTrue();
        _memory.Page(held).RefCount.Should().Be(1);
        _memory.Page(held).PagemapId.Should().Be(pagemap.Id);
        _memory.PageData(held).ToArray().Should().OnlyContain(b => b == 0x44);
        _memory.GetPage(held);
        _memory.PutPage(held);
        teardown.IsCompleted.Should().BeFalse();

        _memory.PutPage(held);
        await teardown.WaitAsync(TestKit.Timeout);

        pagemap.State.Should().Be(DevPagemapState.Removed);
        pagemap.ReferenceCount.Should().Be(0);
        foreach (Pfn pfn in ranges.SelectMany(TestKit.Probes))
        {
            _memory.IsPresent(pfn).Should().BeFalse();
            DevPagemap.Get(_memory, pfn).HasValue.Should().BeFalse();
        }

        Action page = () => _ = _memory.Page(held).RefCount;
        page.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
        _memory.FindZoneDeviceOwner(pagemap.Id).Should().BeNull();

        DevPagemap again = Memremap.Map(_memory, _driver.Options(type, ranges));
        again.Id.Should().Be(pagemap.Id, "the id is reused");
        _memory.Page(held).RefCount.Should().Be(0);
        _memory.PageData(held).ToArray().Should().OnlyContain(b => b == 0, "the old contents went with the old pages");
    }

    [Theory]
    [InlineData(MemoryType.Generic)]
    [InlineData(MemoryType.PciP2PDma)]
    public async Task GenericAndP2PMemoryHoldOneReferencePerPageUntilTeardown(MemoryType type)
    {
        PhysicalRange range = TestKit.DeviceRange(0, lengthMiB: 4);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.Options(type, range));

        pagemap.ReferenceCount.Should().Be(1 + 1024);
        pagemap.InitDevicePage(range.StartPfn);
        pagemap.ReferenceCount.Should().Be(1 + 1024 + 1);

        Task teardown = Memremap.UnmapAsync(pagemap);

        pagemap.ReferenceCount.Should().Be(1, "the kill dropped the initial reference and the per-page ones");
        teardown.IsCompleted.Should().BeFalse();
        _memory.PutPage(range.StartPfn);
        await teardown.WaitAsync(TestKit.Timeout);
        pagemap.State.Should().Be(DevPagemapState.Removed);
        pagemap.ReferenceCount.Should().Be(0);
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public async Task TeardownOfAnUnusedPagemapCompletesAtOnce(MemoryType type)
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.Options(type, range));

        await Memremap.UnmapAsync(pagemap).WaitAsync(TestKit.Timeout);

        pagemap.State.Should().Be(DevPagemapState.Removed);
        _memory.IsPresent(range.StartPfn).Should().BeFalse();
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public async Task UnmapTwiceIsAKernelBugThrownAtOnceAndChangesNothing(MemoryType type)
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.Options(type, range));
        pagemap.InitDevicePage(range.StartPfn);

        Task first = Memremap.UnmapAsync(pagemap);
        long refs = pagemap.ReferenceCount;
        MemorySnapshot before = MemorySnapshot.Take(_memory, TestKit.Probes(range));

        Action second = () => Memremap.UnmapAsync(pagemap);
        Action secondBlocking = () => Memremap.Unmap(pagemap);

        second.Should().Throw<KernelBugException>().WithMessage("*unmapped once*");
        secondBlocking.Should().Throw<KernelBugException>();
        first.IsCompleted.Should().BeFalse();
        pagemap.ReferenceCount.Should().Be(refs, "the refused calls neither kill nor drop references again");
        pagemap.State.Should().Be(DevPagemapState.Dying);
        MemorySnapshot.Take(_memory, TestKit.Probes(range)).Should().Be(before);
        _memory.PutPage(range.StartPfn);
        await first.WaitAsync(TestKit.Timeout);
        pagemap.State.Should().Be(DevPagemapState.Removed);
        second.Should().Throw<KernelBugException>("a removed pagemap is not unmapped again either");
        pagemap.ReferenceCount.Should().Be(0);
    }

    [Fact]
    public async Task UnmapOfADeviceManagedPagemapIsAKernelBugAndUnbindStillTearsItDownOnce()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(device, _driver.PrivateOptions(range));
        MemorySnapshot before = MemorySnapshot.Take(_memory, TestKit.Probes(range));

        Action unmap = () => Memremap.Unmap(pagemap);
        Action unmapAsync = () => Memremap.UnmapAsync(pagemap);

        unmap.Should().Throw<KernelBugException>().WithMessage("*gpu0*");
        unmapAsync.Should().Throw<KernelBugException>();
        pagemap.State.Should().Be(DevPagemapState.Live);
        pagemap.ReferenceCount.Should().Be(1);
        MemorySnapshot.Take(_memory, TestKit.Probes(range)).Should().Be(before);
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);
        pagemap.State.Should().Be(DevPagemapState.Removed);
    }

    [Fact]
    public async Task CancellingTheWaitDoesNotStopTheTeardown()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
        pagemap.InitDevicePage(range.StartPfn);
        using var cancel = new CancellationTokenSource();

        Task waiting = Memremap.UnmapAsync(pagemap, cancel.Token);
        await cancel.CancelAsync();

        Func<Task> wait = () => waiting;
        await wait.Should().ThrowAsync<OperationCanceledException>();
        pagemap.State.Should().Be(DevPagemapState.Dying);
        _memory.PutPage(range.StartPfn);
        await pagemap.StartTeardown().WaitAsync(TestKit.Timeout);
        pagemap.State.Should().Be(DevPagemapState.Removed);
    }

    [Fact]
    public async Task AnExtraLookupPutIsCaughtAndTeardownStillWaitsForPages()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(range));
        DevPagemapReference found = DevPagemap.Get(_memory, range.StartPfn);
        found.Dispose();

        Action extraPut = found.Dispose;

        extraPut.Should().Throw<KernelBugException>();
        pagemap.ReferenceCount.Should().Be(1);
        pagemap.Ref.Idle.IsCompleted.Should().BeFalse();
        pagemap.InitDevicePage(range.StartPfn);
        Task teardown = Memremap.UnmapAsync(pagemap);
        teardown.IsCompleted.Should().BeFalse("the page is still referenced");
        _memory.IsPresent(range.StartPfn).Should().BeTrue();
        _memory.PutPage(range.StartPfn);
        await teardown.WaitAsync(TestKit.Timeout);
    }

    private void AssertRegistrationFailsAndLeavesNothing(DevPagemapOptions options, Errno expected, params PhysicalRange[] ranges)
    {
        Pfn[] probes = [.. ranges.SelectMany(TestKit.Probes)];
        MemorySnapshot before = MemorySnapshot.Take(_memory, probes);

        Action register = () => Memremap.Map(_memory, options);

        register.Should().Throw<HmmException>().Which.Error.Should().Be(expected);
        MemorySnapshot.Take(_memory, probes).Should().Be(before);
        foreach (Pfn pfn in probes)
        {
            _memory.IsPresent(pfn).Should().BeFalse();
            DevPagemap.Get(_memory, pfn).HasValue.Should().BeFalse();
        }

        _memory.FindZoneDeviceOwner(1).Should().BeNull("the failed pagemap's id was given back");
        foreach (PhysicalRange range in ranges)
        {
            DevPagemap again = Memremap.Map(_memory, _driver.PrivateOptions(range));
            again.Id.Should().Be(1);
            _memory.Page(range.StartPfn).PagemapId.Should().Be(again.Id);
            Memremap.Unmap(again);
        }
    }
}
