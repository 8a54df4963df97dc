using FluentAssertions;
using Hmm.Tests.AddressSpace;
using Hmm.Tests.DeviceMemory;
using Hmm.Tests.Migration;
using Hmm.Tests.Mirroring;
using Xunit;

namespace Hmm.Tests.Diagnostics.Trace;

/// <summary>The core's trace events, read back from a trace of the operations that emit them.</summary>
public class CoreTraceEventTests
{
    private const ulong Page = PageSize.Bytes;

    private readonly PhysicalMemory _memory = TestKit.NewMemory();

    [Fact]
    public void DevicesAreNumberedInCreationOrderOnTheirMachine()
    {
        var first = new ManagedDevice(_memory, "first");
        var second = new ManagedDevice(_memory, "second");
        var elsewhere = new ManagedDevice(TestKit.NewMemory(), "elsewhere");

        first.TraceId.Should().Be(0);
        second.TraceId.Should().Be(1);
        elsewhere.TraceId.Should().Be(0, "each machine numbers its own devices");
    }

    [Fact]
    public void ACpuFaultIsRecordedWithItsAddressFlagsAndResult()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        ulong readOnly = mm.MapAnonymous(1, Protection.Read);
        Vma readOnlyArea = TestKit.VmaAt(mm, readOnly);

        List<TraceEvent> events = TraceRecording.Record(_memory, () =>
        {
            mm.Write(a + Page + 8, [1]);
            using MmapLockGuard guard = mm.MmapReadLock();
            mm.HandleMmFault(readOnlyArea, readOnly, FaultFlags.Write).Should().Be(VmFaultResult.Sigsegv);
        });

        List<TraceEvent> faults = events.OfKind(TraceEventKind.CpuFault);
        faults.Should().HaveCount(2);
        faults[0].AsCpuFault().Should().Be((a + Page + 8, FaultFlags.Write, VmFaultResult.None));
        faults[1].AsCpuFault().Should().Be((readOnly, FaultFlags.Write, VmFaultResult.Sigsegv));
        faults.Should().OnlyContain(e => e.Engine == TraceEngine.Cpu && e.Device == 0);
        mm.Exit();
    }

    [Fact]
    public void AMigrationToTheDeviceRecordsSetupPagesAndFinalizeWithTheDevicesNumber()
    {
        _ = new ManagedDevice(_memory, "device 0");
        var driver = new MigrationTestDriver(_memory);
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(4);
        TestKit.Fill(mm, a, 4, seed: 1);
        driver.Decline = i => i == 1;

        List<TraceEvent> events = TraceRecording.Record(_memory, () => driver.MigrateToDevice(mm, a, a + (4 * Page)).Should().Be(3));

        driver.Device.TraceId.Should().Be(1);
        TraceEvent setup = events.OfKind(TraceEventKind.MigrateSetup).Should().ContainSingle().Subject;
        setup.Device.Should().Be(1);
        setup.AsMigrateSetup().Should().Be((TraceDirection.HostToDevice, MigrateVmaSelect.System, a, 4UL, 4UL));
        TraceEvent pages = events.OfKind(TraceEventKind.MigratePages).Should().ContainSingle().Subject;
        pages.Device.Should().Be(1);
        pages.AsMigratePages().Should().Be((TraceDirection.HostToDevice, a, 4UL, 3UL));
        TraceEvent finalize = events.OfKind(TraceEventKind.MigrateFinalize).Should().ContainSingle().Subject;
        finalize.Device.Should().Be(1);
        finalize.AsMigrateFinalize().Should().Be((TraceDirection.HostToDevice, a, 3UL, 1UL));
        events.Select(e => e.Kind).Should().ContainInOrder(TraceEventKind.MigrateSetup, TraceEventKind.MigratePages, TraceEventKind.MigrateFinalize);
        mm.Exit();
    }

    [Fact]
    public void AMigrationBackToRamAndACpuFaultOnADevicePageAreDeviceToHost()
    {
        var driver = new MigrationTestDriver(_memory);
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(3);
        TestKit.Fill(mm, a, 3, seed: 2);
        driver.MigrateToDevice(mm, a, a + (3 * Page)).Should().Be(3);

        List<TraceEvent> events = TraceRecording.Record(_memory, () =>
        {
            driver.MigrateToSystem(mm, a, a + (2 * Page)).Should().Be(2);
            mm.Write(a + (2 * Page), [9]);   // migrate_to_ram of the last page
        });

        List<TraceEvent> setups = events.OfKind(TraceEventKind.MigrateSetup);
        setups.Should().HaveCount(2);
        setups[0].AsMigrateSetup().Should().Be((TraceDirection.DeviceToHost, MigrateVmaSelect.DevicePrivate, a, 2UL, 2UL));
        setups[1].AsMigrateSetup().Should().Be((TraceDirection.DeviceToHost, MigrateVmaSelect.DevicePrivate, a + (2 * Page), 1UL, 1UL));
        List<TraceEvent> finals = events.OfKind(TraceEventKind.MigrateFinalize);
        finals.Select(e => e.AsMigrateFinalize()).Should().Equal(
            (TraceDirection.DeviceToHost, a, 2UL, 0UL),
            (TraceDirection.DeviceToHost, a + (2 * Page), 1UL, 0UL));
        events.Where(e => e.Kind is >= TraceEventKind.MigrateSetup and <= TraceEventKind.MigrateFinalize)
            .Should().OnlyContain(e => e.Device == driver.Device.TraceId);
        events.OfKind(TraceEventKind.CpuFault).Select(e => e.AsCpuFault()).Should().ContainSingle()
            .Which.Should().Be((a + (2 * Page), FaultFlags.Write, VmFaultResult.None));
        mm.Exit();
    }

    [Fact]
    public void AnEvictionByDeviceRangeIsRecordedWithThePhysicalStartOfTheRange()
    {
        _ = new ManagedDevice(_memory, "device 0");
        var driver = new MigrationTestDriver(_memory);
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(5);
        TestKit.Fill(mm, a, 5, seed: 3);
        driver.MigrateToDevice(mm, a, a + (5 * Page)).Should().Be(5);
        ulong start = driver.Pagemap.Ranges[0].Start;
        ulong pages = driver.Pagemap.PageCount;

        List<TraceEvent> events = TraceRecording.Record(_memory, () => driver.EvictAll().Should().Be(5));

        TraceEvent setup = events.OfKind(TraceEventKind.MigrateSetup).Should().ContainSingle().Subject;
        setup.Device.Should().Be(1);
        setup.AsMigrateSetup().Should().Be((TraceDirection.DeviceToHost, MigrateVmaSelect.None, start, pages, 5UL));
        events.OfKind(TraceEventKind.MigratePages).Should().ContainSingle()
            .Which.AsMigratePages().Should().Be((TraceDirection.DeviceToHost, start, pages, 5UL));
        TraceEvent finalize = events.OfKind(TraceEventKind.MigrateFinalize).Should().ContainSingle().Subject;
        finalize.Device.Should().Be(1);
        finalize.AsMigrateFinalize().Should().Be((TraceDirection.DeviceToHost, start, 5UL, 0UL));
        mm.ShouldHold(a, 5, seed: 3);
        mm.Exit();
    }

    [Fact]
    public void ALongTermPinOfACoherentPageRecordsItsMigrationToRamByPhysicalAddress()
    {
        var coherent = new MigrationTestDriver(_memory, "cxl", MemoryType.DeviceCoherent);
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(1);
        TestKit.Fill(mm, a, 1, seed: 4);
        coherent.MigrateToDevice(mm, a, a + Page).Should().Be(1);
        Pfn device = mm.ReadPte(a).Pfn;
        var pinned = new Pfn[1];

        List<TraceEvent> events = TraceRecording.Record(_memory, () => mm.PinUserPages(a, GupFlags.Write | GupFlags.LongTerm, pinned).Should().Be(1));

        events.OfKind(TraceEventKind.MigrateSetup).Should().ContainSingle()
            .Which.AsMigrateSetup().Should().Be((TraceDirection.DeviceToHost, MigrateVmaSelect.None, device.PhysicalAddress, 1UL, 1UL));
        TraceEvent finalize = events.OfKind(TraceEventKind.MigrateFinalize).Should().ContainSingle().Subject;
        finalize.Device.Should().Be(coherent.Device.TraceId);
        finalize.AsMigrateFinalize().Should().Be((TraceDirection.DeviceToHost, device.PhysicalAddress, 1UL, 0UL));
        mm.UnpinUserPages(pinned);
        mm.Exit();
    }

    [Fact]
    public void AnInvalidationRecordsItsRangeReasonAndTheIntervalNotifiersItVisited()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(8);
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier low = MmuIntervalNotifier.Insert(mm, a, 4 * Page, ops);
        MmuIntervalNotifier high = MmuIntervalNotifier.Insert(mm, a + (4 * Page), 4 * Page, ops);

        List<TraceEvent> events = TraceRecording.Record(_memory, () =>
        {
            mm.Mprotect(a, Page, Protection.Read);
            mm.Munmap(a + (3 * Page), 2 * Page);
        });

        events.OfKind(TraceEventKind.Invalidate).Select(e => e.AsInvalidate()).Should().Equal(
            (a, a + Page, MmuNotifierEvent.ProtectionVma, 1UL),
            (a + (3 * Page), a + (5 * Page), MmuNotifierEvent.Unmap, 2UL));
        low.Remove();
        high.Remove();
        mm.Exit();
    }

    [Fact]
    public void APagemapTeardownRecordsKillWithThePagesStillReferencedThenIdleThenRemoved()
    {
        _ = new ManagedDevice(_memory, "device 0");
        var device = new ManagedDevice(_memory, "device 1");
        var driver = new TestDriver();
        DevPagemap pagemap = Devm.Map(device, driver.PrivateOptions(Devm.RequestFreeRegion(device, 2UL << 20)));
        driver.AddFreePages(pagemap);
        driver.TryAllocate(pagemap, out Pfn held).Should().BeTrue();
        _memory.UnlockPage(held);

        List<TraceEvent> events = TraceRecording.Record(_memory, () =>
        {
            Task unbind = device.UnbindAsync();
            SpinWait.SpinUntil(() => pagemap.State != DevPagemapState.Live, TestKit.Timeout).Should().BeTrue("the unbind kills the pagemap");
            unbind.IsCompleted.Should().BeFalse("the held page keeps the pagemap alive");
            _memory.PutPage(held);
            unbind.Wait(TestKit.Timeout).Should().BeTrue();
        });

        List<TraceEvent> lifetime = events.OfKind(TraceEventKind.PagemapLifetime);
        lifetime.Select(e => e.AsPagemapLifetime()).Should().Equal(
            ((ulong)pagemap.Id, TracePagemapChange.Kill, 1UL),
            ((ulong)pagemap.Id, TracePagemapChange.Idle, 0UL),
            ((ulong)pagemap.Id, TracePagemapChange.Removed, 0UL));
        lifetime.Should().OnlyContain(e => e.Device == 1);
    }

    [Fact]
    public void APagemapMappedIntoADevicesRegionWithoutDevmCarriesThatDevicesNumber()
    {
        _ = new ManagedDevice(_memory, "device 0");
        var device = new ManagedDevice(_memory, "device 1");
        var driver = new TestDriver();
        PhysicalRange region = Devm.RequestFreeRegion(device, 4UL << 20);
        DevPagemap pagemap = Memremap.Map(_memory, driver.PrivateOptions(new PhysicalRange(region.Start + (2UL << 20), 2UL << 20)));

        List<TraceEvent> events = TraceRecording.Record(_memory, () => Memremap.Unmap(pagemap));

        events.OfKind(TraceEventKind.PagemapLifetime).Should().HaveCount(3).And.OnlyContain(e => e.Device == 1);
    }
}
