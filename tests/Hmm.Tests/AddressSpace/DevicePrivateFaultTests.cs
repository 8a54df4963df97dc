using FluentAssertions;
using Xunit;

namespace Hmm.Tests.AddressSpace;

public class DevicePrivateFaultTests
{
    private const int Page = PageSize.Bytes;

    private readonly PhysicalMemory _memory = TestKit.NewMemory();
    private readonly TestDriver _driver = new();
    private readonly DevPagemap _pagemap;

    public DevicePrivateFaultTests()
    {
        PhysicalRange range = _memory.RequestFreeRegion(2UL << 20, "gpu");
        _pagemap = Memremap.Map(_memory, new DevPagemapOptions
        {
            Type = MemoryType.DevicePrivate,
            Ranges = [range],
            Owner = _driver,
            Ops = _driver,
            Name = "gpu",
        });
    }

    [Fact]
    public void CpuReadOfADevicePrivatePageMigratesItBackOnceAndReadsTheDeviceData()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 2);
        byte[] data = TestKit.Pattern(Page, seed: 6);
        Pfn device = Plant(mm, a + Page, DevicePage(0), data, writable: true);
        long pagemapRefs = _pagemap.ReferenceCount;

        byte[] read = TestKit.ReadBytes(mm, a + Page + 100, 200);

        read.Should().Equal(data.AsSpan(100, 200).ToArray());
        FaultRecord fault = _driver.Faults.Should().ContainSingle().Subject;
        fault.WasLocked.Should().BeTrue("migrate_to_ram runs with the page locked");
        fault.RefCount.Should().BeGreaterThanOrEqualTo(2, "the entry's reference and the fault's own");
        fault.Fault.Page.Should().Be(device);
        fault.Fault.Pagemap.Should().BeSameAs(_pagemap);
        fault.Fault.Address.Should().Be(a + Page);
        fault.Fault.IsWrite.Should().BeFalse();
        fault.Fault.Mm.Should().BeSameAs(mm);

        Pte pte = mm.ReadPte(a + Page);
        pte.Kind.Should().Be(PteKind.Present);
        _memory.Page(pte.Pfn).IsZoneDevice.Should().BeFalse();
        _memory.PageRefCount(device).Should().Be(0, "the device page is free once migrated");
        _driver.Freed.Should().Equal(device);
        _memory.IsPageLocked(device).Should().BeFalse();
        _pagemap.ReferenceCount.Should().Be(pagemapRefs - 1, "the freed page dropped its pagemap reference");
        Rmap.FindMappings(_memory, pte.Pfn).Should().ContainSingle().Which.Address.Should().Be(a + Page);
    }

    [Fact]
    public void CpuWriteOfAReadOnlyDevicePrivatePageMigratesItAndThenMakesItWritable()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        Plant(mm, a, DevicePage(1), [1, 2, 3], writable: false);

        mm.Write(a + 1, [9]);

        _driver.Faults.Should().ContainSingle().Which.Fault.IsWrite.Should().BeTrue();
        Pte pte = mm.ReadPte(a);
        pte.IsWritable.Should().BeTrue();
        _memory.Page(pte.Pfn).MapCount.Should().Be(1);
        TestKit.ReadBytes(mm, a, 3).Should().Equal(1, 9, 3);
    }

    [Fact]
    public void AHandlerThatReportsRetryAfterMigratingLetsTheAccessComplete()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        Plant(mm, a, DevicePage(2), [7], writable: true);
        _driver.OnFault = fault =>
        {
            MigrateBack(fault);
            return VmFaultResult.Retry;
        };

        TestKit.ReadBytes(mm, a, 1).Should().Equal(7);
        _driver.Faults.Should().HaveCount(1);
    }

    [Fact]
    public void AHandlerReturningSigbusMakesTheAccessABusErrorAndChangesNothing()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        Pfn device = Plant(mm, a, DevicePage(3), [5], writable: true);
        Pte planted = mm.ReadPte(a);
        ulong free = _memory.FreeRamPages;
        _driver.OnFault = _ => VmFaultResult.Sigbus;

        Action read = () => mm.Read(a, new byte[1]);
        Action write = () => mm.Write(a, [1]);

        read.Should().Throw<SegmentationFaultException>().Where(e => e.IsBusError && !e.IsWrite && e.Address == a);
        write.Should().Throw<SegmentationFaultException>().Where(e => e.IsBusError && e.IsWrite);
        mm.ReadPte(a).Should().Be(planted);
        _memory.PageRefCount(device).Should().Be(1, "only the entry's reference is left");
        _memory.Page(device).MapCount.Should().Be(1);
        _memory.IsPageLocked(device).Should().BeFalse();
        _memory.PageData(device)[0].Should().Be(5);
        _memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void AHandlerReturningOomMakesTheAccessEnomem()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        Pfn device = Plant(mm, a, DevicePage(4), [5], writable: true);
        _driver.OnFault = _ => VmFaultResult.Oom;

        Action read = () => mm.Read(a, new byte[1]);

        read.Should().Throw<HmmException>().Where(e => e.Error == Errno.ENOMEM).Which.Should().NotBeOfType<SegmentationFaultException>();
        _memory.PageRefCount(device).Should().Be(1);
        _memory.IsPageLocked(device).Should().BeFalse();
    }

    [Fact]
    public void AHandlerThatClaimsSuccessWithoutMigratingIsAKernelBugNotALivelock()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        Pfn device = Plant(mm, a, DevicePage(5), [5], writable: true);
        Pte planted = mm.ReadPte(a);
        _driver.OnFault = _ => VmFaultResult.None;

        Action fault = () =>
        {
            using MmapLockGuard guard = mm.MmapReadLock();
            mm.HandleMmFault(mm.FindVma(a)!, a, FaultFlags.None);
        };

        fault.Should().Throw<KernelBugException>();
        _driver.Faults.Count.Should().BeGreaterThan(1);
        mm.ReadPte(a).Should().Be(planted);
        _memory.PageRefCount(device).Should().Be(1);
        _memory.IsPageLocked(device).Should().BeFalse();
        mm.IsMmapLockHeld.Should().BeFalse();
    }

    [Fact]
    public void RacingCpuFaultsOnTheSameDevicePagesMigrateEachOnce()
    {
        const int Pages = 32;
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, Pages);
        for (int p = 0; p < Pages; p++)
        {
            Plant(mm, a + ((ulong)p * Page), DevicePage(10 + p), [(byte)(p + 1)], writable: true);
        }

        using var start = new Barrier(2);
        var seen = new byte[2][];

        void Touch(int thread)
        {
            start.SignalAndWait();
            seen[thread] = new byte[Pages];
            for (int p = 0; p < Pages; p++)
            {
                int page = thread == 0 ? p : Pages - 1 - p;
                seen[thread][page] = TestKit.ReadBytes(mm, a + ((ulong)page * Page), 1)[0];
            }
        }

        Parallel.Invoke(() => Touch(0), () => Touch(1));

        byte[] expected = [.. Enumerable.Range(1, Pages).Select(i => (byte)i)];
        seen[0].Should().Equal(expected);
        seen[1].Should().Equal(expected);
        _driver.Faults.Select(f => f.Fault.Page).Should().OnlyHaveUniqueItems("one migrate_to_ram per page: the page lock and the entry re-check stop the second");
        _driver.Faults.Should().HaveCount(Pages);
        _driver.Faults.Should().OnlyContain(f => f.WasLocked);
        _driver.Freed.Should().HaveCount(Pages);
    }

    [Fact]
    public void GetUserPagesMigratesADevicePrivatePageBackInsteadOfReturningIt()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 2);
        Pfn device = Plant(mm, a + Page, DevicePage(6), [3], writable: true);
        var pages = new Pfn[2];

        mm.PinUserPages(a, GupFlags.Write | GupFlags.LongTerm, pages).Should().Be(2);

        pages[1].Should().NotBe(device);
        _memory.Page(pages[1]).IsZoneDevice.Should().BeFalse();
        _memory.PageData(pages[1])[0].Should().Be(3);
        _driver.Faults.Should().ContainSingle().Which.Fault.IsWrite.Should().BeTrue();
        _memory.PageRefCount(device).Should().Be(0);
        mm.UnpinUserPages(pages);
    }

    [Fact]
    public void RmapFindsADevicePrivateEntry()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 3);
        Pfn device = Plant(mm, a + (2 * Page), DevicePage(7), [1], writable: true);

        PageMapping mapping = Rmap.FindMappings(_memory, device).Should().ContainSingle().Subject;

        mapping.Address.Should().Be(a + (2 * Page));
        mapping.Entry.Kind.Should().Be(PteKind.DevicePrivate);
        mapping.Entry.Pfn.Should().Be(device);
    }

    [Fact]
    public void ParentAndChildEachBringASharedDevicePageBackAfterFork()
    {
        var parent = new Mm(_memory, "parent");
        ulong a = TestKit.MapAnonymous(parent, 1);
        Pfn device = Plant(parent, a, DevicePage(8), [4], writable: true);
        Mm child = parent.Fork("child");
        _memory.Page(device).MapCount.Should().Be(2);
        _memory.PageRefCount(device).Should().Be(2);
        child.ReadPte(a).Kind.Should().Be(PteKind.DevicePrivate);
        child.ReadPte(a).IsWritable.Should().BeFalse();
        parent.ReadPte(a).IsWritable.Should().BeFalse("fork write-protects a writable device-private entry");

        child.Write(a + 1, [5]);
        TestKit.ReadBytes(parent, a, 2).Should().Equal(4, 0);

        _driver.Faults.Select(f => f.Fault.Mm).Should().Equal(child, parent);
        TestKit.ReadBytes(child, a, 2).Should().Equal(4, 5);
        _memory.PageRefCount(device).Should().Be(0);
        parent.ReadPte(a).Pfn.Should().NotBe(child.ReadPte(a).Pfn);
    }

    [Fact]
    public async Task ACpuFaultDuringPagemapTeardownStillMigratesThePageBack()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        Pfn device = Plant(mm, a, DevicePage(9), [6], writable: true);
        Task teardown = Memremap.UnmapAsync(_pagemap);
        _pagemap.State.Should().Be(DevPagemapState.Dying);
        teardown.IsCompleted.Should().BeFalse("the mapped device page still holds a reference");

        TestKit.ReadBytes(mm, a, 1).Should().Equal(6);

        _driver.Faults.Should().ContainSingle();
        await teardown.WaitAsync(TimeSpan.FromSeconds(30)); // the last device page was freed by the migration
        _pagemap.State.Should().Be(DevPagemapState.Removed);
        _memory.IsPresent(device).Should().BeFalse();
    }

    [Fact]
    public async Task AnAccessToAPageUnderMigrationWaitsForTheMigrationToFinish()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [1]);
        Pte original = mm.ReadPte(a);
        Pfn page = original.Pfn;

        // Start a migration by hand: lock the page and replace its entry with a migration entry, which holds no
        // mapcount; the entry's page reference passes to the migrator.
        _memory.LockPage(page);
        PteTable table = mm.PageTable.Find(a)!;
        lock (table.Lock)
        {
            table.SetUnsynchronized(PageTable.PteIndex(a), Pte.Software(PteKind.Migration, page, writable: true));
            _memory.Frame(page)._mapCount = 0;
        }

        Task<byte[]> reader = Task.Run(() => TestKit.ReadBytes(mm, a, 1));
        (await Task.WhenAny(reader, Task.Delay(100))).Should().NotBeSameAs(reader, "the reader waits for the page lock");

        // Finish the migration (back onto the same page) and unlock.
        _memory.PageData(page)[0] = 2;
        lock (table.Lock)
        {
            table.SetUnsynchronized(PageTable.PteIndex(a), original);
            _memory.Frame(page)._mapCount = 1;
        }

        _memory.UnlockPage(page);
        (await reader.WaitAsync(TimeSpan.FromSeconds(30))).Should().Equal(2);
        _memory.PageRefCount(page).Should().Be(1);
    }

    [Fact]
    public void ACpuAccessRevokesDeviceExclusiveAccessAndTellsTheNotifiers()
    {
        var mm = new Mm(_memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [1]);
        Pfn page = mm.ReadPte(a).Pfn;
        PteTable table = mm.PageTable.Find(a)!;
        lock (table.Lock)
        {
            table.SetUnsynchronized(PageTable.PteIndex(a), Pte.Software(PteKind.DeviceExclusive, page, writable: true));
        }

        RecordingNotifierChain notifiers = RecordingNotifierChain.InstallOn(mm);

        mm.Write(a + 1, [2]);

        Pte pte = mm.ReadPte(a);
        pte.Kind.Should().Be(PteKind.Present);
        pte.Pfn.Should().Be(page);
        pte.IsWritable.Should().BeTrue();
        var expected = new MmuNotifierRange(a, a + Page, MmuNotifierEvent.Clear);
        notifiers.Calls.Should().Equal(NotifierCall.Pair(expected.Start, expected.End, expected.Event));
        TestKit.ReadBytes(mm, a, 2).Should().Equal(1, 2);
        _memory.Page(page).MapCount.Should().Be(1);
        _memory.PageRefCount(page).Should().Be(1);
        _memory.IsPageLocked(page).Should().BeFalse();
    }

    /// <summary>Moves the faulting page back to a new RAM page, as a minimal migrate_to_ram would.</summary>
    private static VmFaultResult MigrateBack(in DevicePrivateFault fault)
    {
        Mm mm = fault.Mm;
        PhysicalMemory memory = mm.Memory;
        Pfn device = fault.Page;
        if (!memory.TryAllocatePage(out Pfn ram))
        {
            return VmFaultResult.Oom;
        }

        memory.PageData(device).CopyTo(memory.PageData(ram));
        PteTable table = mm.PageTable.Find(fault.Address)!;
        int index = PageTable.PteIndex(fault.Address);
        bool migrated = false;
        lock (table.Lock)
        {
            Pte pte = table.Read(index);
            if (pte.Kind == PteKind.DevicePrivate && pte.Pfn == device)
            {
                ref PageFrame deviceFrame = ref memory.Frame(device);
                ref PageFrame ramFrame = ref memory.Frame(ram);
                ramFrame._mapping = deviceFrame._mapping;
                ramFrame._index = deviceFrame._index;
                ramFrame._mapCount = 1;
                Interlocked.Or(ref ramFrame._flags, (ulong)(PageFlags.Anon | PageFlags.AnonExclusive | PageFlags.SwapBacked | PageFlags.Uptodate | PageFlags.Dirty));
                Interlocked.Decrement(ref deviceFrame._mapCount);
                table.SetUnsynchronized(index, Pte.Present(ram, pte.IsWritable, dirty: pte.IsWritable));
                migrated = true;
            }
        }

        // The entry's reference on the device page goes with the entry; the fault path still holds its own.
        memory.PutPage(migrated ? device : ram);
        return VmFaultResult.None;
    }

    private Pfn DevicePage(int index) => _pagemap.Ranges[0].StartPfn + (ulong)index;

    /// <summary>Installs a device-private entry for <paramref name="device"/> at an empty entry, as a migration to the device leaves it.</summary>
    private Pfn Plant(Mm mm, ulong address, Pfn device, byte[] data, bool writable)
    {
        mm.ReadPte(address).IsNone.Should().BeTrue();
        _pagemap.InitDevicePage(device);
        data.CopyTo(_memory.PageData(device));
        Vma vma = TestKit.VmaAt(mm, address);
        ref PageFrame frame = ref _memory.Frame(device);
        frame._mapping = vma.AnonVma!.Handle;
        frame._index = vma.PageIndex(address);
        frame._mapCount = 1;
        Interlocked.Or(ref frame._flags, (ulong)(PageFlags.Anon | PageFlags.AnonExclusive));
        _memory.UnlockPage(device);
        PteTable table = mm.PageTable.FindOrAllocate(address);
        lock (table.Lock)
        {
            table.SetUnsynchronized(PageTable.PteIndex(address), Pte.Software(PteKind.DevicePrivate, device, writable));
        }

        return device;
    }

    private sealed record FaultRecord(DevicePrivateFault Fault, bool WasLocked, int RefCount);

    private sealed class TestDriver : IDevPagemapOps
    {
        private readonly Lock _lock = new();
        private readonly List<FaultRecord> _faults = [];
        private readonly List<Pfn> _freed = [];

        public Func<DevicePrivateFault, VmFaultResult>? OnFault { get; set; }

        public IReadOnlyList<FaultRecord> Faults
        {
            get
            {
                lock (_lock)
                {
                    return [.. _faults];
                }
            }
        }

        public IReadOnlyList<Pfn> Freed
        {
            get
            {
                lock (_lock)
                {
                    return [.. _freed];
                }
            }
        }

        public VmFaultResult MigrateToRam(in DevicePrivateFault fault)
        {
            PhysicalMemory memory = fault.Pagemap.Memory;
            lock (_lock)
            {
                _faults.Add(new FaultRecord(fault, memory.IsPageLocked(fault.Page), memory.PageRefCount(fault.Page)));
            }

            return OnFault is { } handler ? handler(fault) : MigrateBack(fault);
        }

        public void PageFree(DevPagemap pagemap, Pfn pfn)
        {
            lock (_lock)
            {
                _freed.Add(pfn);
            }
        }
    }
}
