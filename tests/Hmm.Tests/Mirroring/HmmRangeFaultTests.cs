using FluentAssertions;
using Hmm.Tests.Memory;
using Xunit;

namespace Hmm.Tests.Mirroring;

/// <summary>
/// Each semantic of <c>hmm_range_fault</c> (mm/hmm.c) with the outputs the kernel gives: snapshot, fault,
/// per-page requests, sticky flags, unmirrorable areas, errors, device-private pages, argument checks and the
/// allocation-free populated path.
/// </summary>
public class HmmRangeFaultTests
{
    private const ulong Page = 4096;
    private const ulong Pmd = 2UL << 20;

    // 2 MiB aligned, so page i of a mapping at Base is entry i of its PTE table.
    private const ulong Base = 0x4000_0000;

    // An input value with bits the walk must overwrite: a frame number and a non-sticky output flag.
    private const ulong Sentinel = 0x1234 | HmmPfn.Error;

    private const ulong FaultWrite = HmmPfn.RequestFault | HmmPfn.RequestWrite;

    private static readonly ulong s_zero = PhysicalMemory.ZeroPage.Value;

    private readonly PhysicalMemory _memory = new(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });
    private readonly Mm _mm;

    public HmmRangeFaultTests()
    {
        _mm = new Mm(_memory);
    }

    [Fact]
    public void SnapshotOfUntouchedAnonymousMemoryGivesZeroForEveryPage()
    {
        ulong a = Map(8);
        MmuIntervalNotifier notifier = Watch(a, 8);
        ulong[] pfns = Filled(8, Sentinel);

        FaultOnce(notifier, a, 8, pfns, defaultFlags: 0).Should().Be(Errno.None);

        pfns.Should().OnlyContain(p => p == 0);
        CpuPfns(a, 8).Should().OnlyContain(p => p == 0, "a snapshot faults nothing in");

        // With the PTE table present (one page touched), the untouched entries are still 0.
        _mm.Read(a + (7 * Page), new byte[1]);
        FaultOnce(notifier, a, 8, pfns, defaultFlags: 0).Should().Be(Errno.None);
        pfns.Take(7).Should().OnlyContain(p => p == 0);
        pfns[7].Should().Be(s_zero | HmmPfn.Valid);
    }

    [Fact]
    public void SnapshotOfReadFaultedMemoryGivesTheZeroPageValidWithoutWrite()
    {
        ulong a = Map(8);
        _mm.Read(a, new byte[8 * Page]);
        MmuIntervalNotifier notifier = Watch(a, 8);
        ulong[] pfns = Filled(8, Sentinel);

        FaultOnce(notifier, a, 8, pfns, defaultFlags: 0).Should().Be(Errno.None);

        pfns.Should().OnlyContain(p => p == (s_zero | HmmPfn.Valid));
        HmmPfn.MapOrder(pfns[0]).Should().Be(0);
    }

    [Fact]
    public void SnapshotOfWrittenMemoryGivesValidWriteWithTheCpuPfn()
    {
        ulong a = Map(8);
        _mm.Write(a, Pattern(8 * (int)Page, 3));
        MmuIntervalNotifier notifier = Watch(a, 8);
        ulong[] pfns = Filled(8, Sentinel);

        FaultOnce(notifier, a, 8, pfns, defaultFlags: 0).Should().Be(Errno.None);

        for (int i = 0; i < 8; i++)
        {
            Pte pte = _mm.ReadPte(a + ((ulong)i * Page));
            pte.Pfn.Should().NotBe(PhysicalMemory.ZeroPage);
            pfns[i].Should().Be(pte.Pfn.Value | HmmPfn.Valid | HmmPfn.Write, "page {0}", i);
            HmmPfn.ToPfn(pfns[i]).Should().Be(pte.Pfn);
            HmmPfn.MapOrder(pfns[i]).Should().Be(0);
        }

        pfns.Distinct().Should().HaveCount(8);
    }

    [Fact]
    public void RequestFaultMapsUntouchedPagesReadOnlyToTheZeroPage()
    {
        ulong a = Map(8);
        _mm.Write(a + (3 * Page), [42]);
        Pfn written = _mm.ReadPte(a + (3 * Page)).Pfn;
        MmuIntervalNotifier notifier = Watch(a, 8);
        ulong[] pfns = Filled(8, Sentinel);

        FaultOnce(notifier, a, 8, pfns, HmmPfn.RequestFault).Should().Be(Errno.None);

        for (int i = 0; i < 8; i++)
        {
            Pte pte = _mm.ReadPte(a + ((ulong)i * Page));
            if (i == 3)
            {
                pfns[i].Should().Be(written.Value | HmmPfn.Valid | HmmPfn.Write, "a writable page is reported writable");
                continue;
            }

            pfns[i].Should().Be(s_zero | HmmPfn.Valid, "page {0}", i);
            pte.Pfn.Should().Be(PhysicalMemory.ZeroPage);
            pte.IsWritable.Should().BeFalse();
        }
    }

    [Fact]
    public void RequestWriteFaultsUntouchedPagesToNewWritablePages()
    {
        ulong a = Map(4);
        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] pfns = new ulong[4];

        FaultOnce(notifier, a, 4, pfns, FaultWrite).Should().Be(Errno.None);

        for (int i = 0; i < 4; i++)
        {
            Pte pte = _mm.ReadPte(a + ((ulong)i * Page));
            pte.IsWritable.Should().BeTrue();
            pte.Pfn.Should().NotBe(PhysicalMemory.ZeroPage);
            pfns[i].Should().Be(pte.Pfn.Value | HmmPfn.Valid | HmmPfn.Write);
        }
    }

    [Fact]
    public void RequestWriteBreaksCopyOnWriteAfterFork()
    {
        ulong a = Map(4);
        byte[] data = Pattern(4 * (int)Page, 7);
        _mm.Write(a, data);
        ulong[] before = CpuPfns(a, 4);
        Mm child = _mm.Fork();
        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] pfns = new ulong[4];

        FaultOnce(notifier, a, 4, pfns, defaultFlags: 0).Should().Be(Errno.None);
        pfns.Should().Equal(before.Select(p => p | HmmPfn.Valid), "after fork both processes map the pages read-only");

        // The COW break replaces mapped pages, so it invalidates the range: the attempt that broke it sees EBUSY.
        FaultOnce(notifier, a, 4, pfns, FaultWrite).Should().Be(Errno.EBUSY);
        FaultRetrying(notifier, a, 4, pfns, FaultWrite).Should().Be(Errno.None);

        ulong[] after = CpuPfns(a, 4);
        for (int i = 0; i < 4; i++)
        {
            after[i].Should().NotBe(before[i], "page {0} was copied", i);
            pfns[i].Should().Be(after[i] | HmmPfn.Valid | HmmPfn.Write);
            child.ReadPte(a + ((ulong)i * Page)).Pfn.Value.Should().Be(before[i], "the child keeps the original page");
        }

        ReadCpu(_mm, a, 4).Should().Equal(data);
        ReadCpu(child, a, 4).Should().Equal(data);
    }

    [Fact]
    public void PerPageRequestFaultsFromTheFirstRequestingPageToTheEndOfItsPageTable()
    {
        // hmm_vma_handle_pte: the first page that needs a fault faults [it, end of the PMD walk) with its own
        // requirement; pages before it keep their snapshot, the next PTE table is walked as a hole.
        ulong a = Map(1024);
        _mm.Read(a, new byte[1]);
        MmuIntervalNotifier notifier = Watch(a, 1024);
        ulong[] pfns = new ulong[1024];
        pfns[4] = HmmPfn.RequestFault;

        FaultOnce(notifier, a, 1024, pfns, defaultFlags: 0, mask: FaultWrite).Should().Be(Errno.None);

        pfns[0].Should().Be(s_zero | HmmPfn.Valid);
        pfns[1..4].Should().OnlyContain(p => p == 0);
        pfns[4..512].Should().OnlyContain(p => p == (s_zero | HmmPfn.Valid));
        pfns[512..].Should().OnlyContain(p => p == 0);
        ulong[] cpu = CpuPfns(a, 1024);
        cpu[1..4].Should().OnlyContain(p => p == 0, "pages before the first request are not faulted");
        cpu[4..512].Should().OnlyContain(p => p == s_zero);
        cpu[512..].Should().OnlyContain(p => p == 0, "the fault stops at the end of the PTE table");
    }

    [Fact]
    public void PerPageRequestInAnEmptyPageTableFaultsTheWholeHole()
    {
        // hmm_vma_walk_hole: with no PTE table the combined requirement faults the hole from the walk's start.
        ulong a = Map(1024);
        MmuIntervalNotifier notifier = Watch(a, 1024);
        ulong[] pfns = new ulong[1024];
        pfns[4] = HmmPfn.RequestFault;

        FaultOnce(notifier, a, 1024, pfns, defaultFlags: 0, mask: FaultWrite).Should().Be(Errno.None);

        pfns[..512].Should().OnlyContain(p => p == (s_zero | HmmPfn.Valid));
        pfns[512..].Should().OnlyContain(p => p == 0);
        CpuPfns(a, 1024)[512..].Should().OnlyContain(p => p == 0);
    }

    [Fact]
    public void PerPageWriteRequestWriteFaultsTheRestOfThePageTable()
    {
        ulong a = Map(1024);
        _mm.Read(a, new byte[1]);
        MmuIntervalNotifier notifier = Watch(a, 1024);
        ulong[] pfns = new ulong[1024];
        pfns[2] = HmmPfn.RequestFault;
        pfns[5] = FaultWrite;

        FaultRetrying(notifier, a, 1024, pfns, defaultFlags: 0, mask: FaultWrite).Should().Be(Errno.None);

        ulong[] cpu = CpuPfns(a, 1024);
        pfns[0].Should().Be(s_zero | HmmPfn.Valid);
        pfns[1].Should().Be(0);
        pfns[2..5].Should().OnlyContain(p => p == (s_zero | HmmPfn.Valid));
        for (int i = 5; i < 512; i++)
        {
            cpu[i].Should().NotBe(s_zero, "page {0} was write-faulted with page 5's requirement", i);
            pfns[i].Should().Be(cpu[i] | HmmPfn.Valid | HmmPfn.Write);
        }

        pfns[512..].Should().OnlyContain(p => p == 0);
    }

    [Fact]
    public void StickyFlagsArePreservedInEveryOutput()
    {
        ulong a = Map(3);
        _mm.Write(a, [1]);
        _mm.Read(a + Page, new byte[1]);
        MmuIntervalNotifier notifier = Watch(a, 4);
        const ulong all = HmmPfn.DmaMapped | HmmPfn.P2PDma | HmmPfn.P2PDmaBus;
        ulong[] pfns = [HmmPfn.DmaMapped | 0x777, HmmPfn.P2PDma | HmmPfn.Error, HmmPfn.P2PDmaBus | HmmPfn.Write, all | 0x55];

        FaultOnce(notifier, a, 4, pfns, defaultFlags: 0).Should().Be(Errno.None);

        pfns[0].Should().Be(HmmPfn.DmaMapped | _mm.ReadPte(a).Pfn.Value | HmmPfn.Valid | HmmPfn.Write);
        pfns[1].Should().Be(HmmPfn.P2PDma | s_zero | HmmPfn.Valid);
        pfns[2].Should().Be(HmmPfn.P2PDmaBus);
        pfns[3].Should().Be(all | HmmPfn.Error, "page 3 has no area");

        ulong[] faulted = [all, all, all];
        FaultOnce(notifier, a, 3, faulted, HmmPfn.RequestFault).Should().Be(Errno.None);
        faulted[2].Should().Be(all | s_zero | HmmPfn.Valid, "sticky flags survive a fault and the re-walk");
    }

    [Fact]
    public void NoAreaGivesErrorInASnapshotAndEfaultWhenAFaultIsRequested()
    {
        ulong a = Map(2);
        Map(2, at: a + (3 * Page));
        MmuIntervalNotifier notifier = Watch(a, 5);
        ulong[] pfns = Filled(5, Sentinel);

        FaultOnce(notifier, a, 5, pfns, defaultFlags: 0).Should().Be(Errno.None);
        pfns.Should().Equal(0, 0, HmmPfn.Error, 0, 0);

        pfns = new ulong[5];
        pfns[0] = HmmPfn.RequestFault;
        FaultOnce(notifier, a, 5, pfns, defaultFlags: 0, mask: HmmPfn.RequestFault).Should().Be(Errno.None, "the hole itself requests nothing");
        pfns[2].Should().Be(HmmPfn.Error);

        FaultOnce(notifier, a, 5, new ulong[5], HmmPfn.RequestFault).Should().Be(Errno.EFAULT);
        FaultOnce(notifier, a + (2 * Page), 1, new ulong[1], HmmPfn.RequestFault).Should().Be(Errno.EFAULT);
        _mm.ReadPte(a + (2 * Page)).IsNone.Should().BeTrue();
    }

    [Fact]
    public void ProtNoneAreaGivesErrorInASnapshotAndEfaultWhenAFaultIsRequested()
    {
        ulong a = Map(4);
        _mm.Write(a, Pattern(4 * (int)Page, 1));
        ulong[] before = CpuPfns(a, 4);
        _mm.Mprotect(a, 4 * Page, Protection.None);
        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] pfns = Filled(4, Sentinel);

        FaultOnce(notifier, a, 4, pfns, defaultFlags: 0).Should().Be(Errno.None);
        pfns.Should().OnlyContain(p => p == HmmPfn.Error, "a VMA without VM_READ cannot be mirrored, even where pages are present");

        FaultOnce(notifier, a, 4, new ulong[4], HmmPfn.RequestFault).Should().Be(Errno.EFAULT);
        CpuPfns(a, 4).Should().Equal(before);
    }

    [Theory]
    [InlineData(VmFlags.Io)]
    [InlineData(VmFlags.PfnMap)]
    public void IoAreaGivesErrorInASnapshotAndEfaultWhenAFaultIsRequested(VmFlags flag)
    {
        ulong a = Map(4);
        _mm.Write(a, [9]);
        using (_mm.MmapWriteLock())
        {
            _mm.FindVma(a)!.Flags |= flag;
        }

        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] pfns = Filled(4, Sentinel);

        FaultOnce(notifier, a, 4, pfns, defaultFlags: 0).Should().Be(Errno.None);
        pfns.Should().OnlyContain(p => p == HmmPfn.Error);

        FaultOnce(notifier, a, 4, new ulong[4], HmmPfn.RequestFault).Should().Be(Errno.EFAULT);
        _mm.ReadPte(a + Page).IsNone.Should().BeTrue();
    }

    [Fact]
    public void RangeAboveUserSpaceGivesErrorInASnapshotAndEfaultWhenAFaultIsRequested()
    {
        // test_hmm watches the whole address space; hmm_range_fault finds no area above TASK_SIZE.
        ulong top = Map(2, at: Mm.TaskSize - (2 * Page));
        _mm.Write(top, [7]);
        MmuIntervalNotifier notifier = MmuIntervalNotifier.Insert(_mm, 0, ulong.MaxValue & ~(Page - 1), new SequenceOnlyOps());
        ulong[] straddling = Filled(4, Sentinel);

        FaultOnce(notifier, top, 4, straddling, defaultFlags: 0).Should().Be(Errno.None);

        straddling[0].Should().Be(CpuPfns(top, 1)[0] | HmmPfn.Valid | HmmPfn.Write);
        straddling[1].Should().Be(0);
        straddling[2..].Should().OnlyContain(p => p == HmmPfn.Error);

        ulong[] above = Filled(4, Sentinel);
        FaultOnce(notifier, Mm.TaskSize, 4, above, defaultFlags: 0).Should().Be(Errno.None);
        above.Should().OnlyContain(p => p == HmmPfn.Error);

        ulong[] faulted = Filled(4, Sentinel);
        FaultOnce(notifier, Mm.TaskSize, 4, faulted, HmmPfn.RequestFault).Should().Be(Errno.EFAULT);
        faulted.Should().OnlyContain(p => p == Sentinel, "the walk fails before filling the hole");

        ulong highest = ulong.MaxValue - (3 * Page) + 1;
        ulong[] atTheTop = Filled(2, Sentinel);
        FaultOnce(notifier, highest, 2, atTheTop, defaultFlags: 0).Should().Be(Errno.None);
        atTheTop.Should().OnlyContain(p => p == HmmPfn.Error);
        FaultOnce(notifier, highest, 2, Filled(2, Sentinel), FaultWrite).Should().Be(Errno.EFAULT);

        ulong[] mixed = [0, HmmPfn.RequestFault, 0, 0];
        FaultOnce(notifier, top, 4, mixed, defaultFlags: 0, mask: HmmPfn.RequestFault).Should().Be(Errno.None, "only the mapped page requests a fault");
        mixed[1].Should().Be(s_zero | HmmPfn.Valid);
        mixed[2..].Should().OnlyContain(p => p == HmmPfn.Error);
        FaultOnce(notifier, top, 4, new ulong[4], HmmPfn.RequestFault).Should().Be(Errno.EFAULT);
    }

    [Fact]
    public void SpecialEntryInAMixedMapAreaIsAnErrorOrEfaultWhenRequested()
    {
        // vmf_insert_pfn of a raw frame into a mixed-map area: the area is walked, but the entry has no page a
        // device may map (vm_normal_page finds none), so it reads as ERROR, or EFAULT when the page is requested.
        ulong a = _mm.MmapSpecial(0, 2 * Page, Protection.ReadWrite, MapFlags.Shared, VmFlags.MixedMap);
        Pfn raw = new(Pfn.Limit - 1);
        using (_mm.MmapWriteLock())
        {
            _mm.InsertPfn(_mm.FindVma(a)!, a, raw).Should().Be(VmFaultResult.None);
        }

        MmuIntervalNotifier notifier = Watch(a, 1);
        ulong[] pfns = Filled(1, Sentinel);
        FaultOnce(notifier, a, 1, pfns, defaultFlags: 0).Should().Be(Errno.None);
        pfns[0].Should().Be(HmmPfn.Error);

        ulong[] requested = Filled(1, Sentinel);
        FaultOnce(notifier, a, 1, requested, HmmPfn.RequestFault).Should().Be(Errno.EFAULT);
        _mm.ReadPte(a).IsSpecial.Should().BeTrue("nothing changed the driver's entry");
    }

    [Fact]
    public void MixedMapAreaIsWalkedAndFaultedLikeAnyOther()
    {
        // The kernel's mixedmap selftest: a driver's private mapping of a page it inserted (vm_insert_page) is
        // walked like any area; the page is read-only there (copy-on-write), and a write fault copies it.
        ulong a = _mm.MmapSpecial(0, 2 * Page, Protection.ReadWrite, MapFlags.Private, VmFlags.MixedMap);
        Pfn page = _memory.AllocatePage();
        _memory.PageData(page)[0] = 0x5a;
        using (_mm.MmapWriteLock())
        {
            _mm.InsertPage(_mm.FindVma(a)!, a, page).Should().Be(Errno.None);
        }

        MmuIntervalNotifier notifier = Watch(a, 2);
        ulong[] pfns = Filled(2, Sentinel);

        FaultOnce(notifier, a, 2, pfns, defaultFlags: 0).Should().Be(Errno.None);
        pfns[0].Should().Be(page.Value | HmmPfn.Valid, "an inserted page in a private mapping is mapped read-only");
        pfns[1].Should().Be(0, "a hole with no fault requested is reported empty");

        ulong[] one = Filled(1, Sentinel);
        FaultRetrying(notifier, a, 1, one, FaultWrite).Should().Be(Errno.None, "the copy invalidates the range once, so the walk retries");
        HmmPfn.ToPfn(one[0]).Should().NotBe(page, "the write fault copied the driver's page");
        (one[0] & (HmmPfn.Valid | HmmPfn.Write)).Should().Be(HmmPfn.Valid | HmmPfn.Write);
        var bytes = new byte[1];
        _mm.Read(a, bytes);
        bytes[0].Should().Be(0x5a);
        _memory.PutPage(page);
    }

    [Theory]
    [InlineData(VmFlags.Io)]
    [InlineData(VmFlags.PfnMap)]
    public void IoAreaNextToANormalOneGivesErrorOnlyForItsOwnPages(VmFlags flag)
    {
        ulong a = Map(2);
        ulong io = Map(2, at: a + (2 * Page));
        _mm.Write(a, [1]);
        _mm.Write(io, [2]);
        using (_mm.MmapWriteLock())
        {
            _mm.FindVma(io)!.Flags |= flag;
        }

        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] before = CpuPfns(a, 4);
        ulong[] pfns = [HmmPfn.RequestFault, 0, 0, 0];

        FaultOnce(notifier, a, 4, pfns, defaultFlags: 0, mask: HmmPfn.RequestFault).Should().Be(Errno.None);
        pfns[0].Should().Be(before[0] | HmmPfn.Valid | HmmPfn.Write);
        pfns[2..].Should().OnlyContain(p => p == HmmPfn.Error, "the I/O area's present page is not reported");

        ulong[] requested = [0, 0, HmmPfn.RequestFault, 0];
        FaultOnce(notifier, a, 4, requested, defaultFlags: 0, mask: HmmPfn.RequestFault).Should().Be(Errno.EFAULT);
        CpuPfns(a, 4).Should().Equal(before);
    }

    [Fact]
    public void WriteRequestOnAReadOnlyAreaGivesEpermAndFaultsNothing()
    {
        ulong a = Map(4, Protection.Read);
        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] pfns = Filled(4, Sentinel);

        FaultOnce(notifier, a, 4, pfns, FaultWrite).Should().Be(Errno.EPERM);
        CpuPfns(a, 4).Should().OnlyContain(p => p == 0);

        FaultOnce(notifier, a, 4, pfns, HmmPfn.RequestFault).Should().Be(Errno.None);
        pfns.Should().OnlyContain(p => p == (s_zero | HmmPfn.Valid));
    }

    [Fact]
    public void InvalidationAfterReadBeginGivesEbusyBeforeAnythingIsWalked()
    {
        ulong a = Map(6);
        _mm.Write(a, Pattern(6 * (int)Page, 5));
        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] pfns = Filled(4, Sentinel);

        ulong outside = notifier.ReadBegin();
        _mm.Madvise(a + (5 * Page), Page, Advice.DontNeed);
        FaultOnce(notifier, a, 4, pfns, FaultWrite, sequence: outside).Should().Be(Errno.None, "an invalidation outside the interval does not disturb it");

        ulong sequence = notifier.ReadBegin();
        _mm.Madvise(a + Page, Page, Advice.DontNeed);
        pfns = Filled(4, Sentinel);

        FaultOnce(notifier, a, 4, pfns, FaultWrite, sequence: sequence).Should().Be(Errno.EBUSY);

        pfns.Should().OnlyContain(p => p == Sentinel, "nothing was walked");
        _mm.ReadPte(a + Page).IsNone.Should().BeTrue("nothing was faulted");
    }

    [Fact]
    public void EbusyLeavesOutputsBelowTheRestartPointAndInputsAboveIt()
    {
        ulong a = Map(4);
        _mm.Write(a, Pattern(2 * (int)Page, 8));
        _mm.Read(a + (2 * Page), new byte[2 * Page]);
        ulong[] before = CpuPfns(a, 4);
        MmuIntervalNotifier notifier = Watch(a, 4);
        const ulong input = 0xABC | HmmPfn.DmaMapped;
        ulong[] pfns = Filled(4, input);

        // Page 2 maps the zero page: its write fault copies it, which invalidates the range mid-walk.
        FaultOnce(notifier, a, 4, pfns, FaultWrite).Should().Be(Errno.EBUSY);

        pfns[0].Should().Be(HmmPfn.DmaMapped | before[0] | HmmPfn.Valid | HmmPfn.Write);
        pfns[1].Should().Be(HmmPfn.DmaMapped | before[1] | HmmPfn.Valid | HmmPfn.Write);
        pfns[2].Should().Be(input);
        pfns[3].Should().Be(input);
    }

    [Fact]
    public void InjectedPageAllocationFailureGivesEnomemAndChangesNothing()
    {
        ulong a = Map(4);
        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong free = _memory.FreeRamPages;
        _memory.FaultInjection.FailNext(FaultPoint.PageAllocation);

        FaultOnce(notifier, a, 4, new ulong[4], FaultWrite).Should().Be(Errno.ENOMEM);

        CpuPfns(a, 4).Should().OnlyContain(p => p == 0);
        _memory.FreeRamPages.Should().Be(free);

        FaultOnce(notifier, a, 4, new ulong[4], FaultWrite).Should().Be(Errno.None, "the failure was one-shot");
    }

    [Fact]
    public void OwnDevicePrivatePagesAreReportedAndNeverFaulted()
    {
        var device = new DeviceFixture(_memory);
        ulong a = Map(2);
        Pfn writable = device.Plant(_mm, a, writable: true, fill: 0x5A);
        Pfn readOnly = device.Plant(_mm, a + Page, writable: false, fill: 0x6B);
        MmuIntervalNotifier notifier = Watch(a, 2);
        ulong[] pfns = new ulong[2];

        FaultOnce(notifier, a, 2, pfns, FaultWrite, owner: device.Driver.Owner).Should().Be(Errno.None);

        pfns[0].Should().Be(writable.Value | HmmPfn.Valid | HmmPfn.Write);
        pfns[1].Should().Be(readOnly.Value | HmmPfn.Valid, "an own page is reported as it is, even when a write is requested");
        HmmPfn.MapOrder(pfns[0]).Should().Be(0);
        device.Driver.MigrateToRamCalls.Should().Be(0);
        _mm.ReadPte(a).Kind.Should().Be(PteKind.DevicePrivate);
        _mm.ReadPte(a + Page).Should().Be(Pte.Software(PteKind.DevicePrivate, readOnly, writable: false));
    }

    [Fact]
    public void ForeignDevicePrivatePagesSnapshotAsZeroAndFaultBackThroughMigrateToRam()
    {
        var device = new DeviceFixture(_memory);
        ulong a = Map(1);
        Pfn devicePage = device.Plant(_mm, a, writable: true, fill: 0x5A);
        MmuIntervalNotifier notifier = Watch(a, 1);
        ulong[] pfns = Filled(1, Sentinel);

        FaultOnce(notifier, a, 1, pfns, defaultFlags: 0, owner: new object()).Should().Be(Errno.None);
        pfns[0].Should().Be(0);
        FaultOnce(notifier, a, 1, pfns, defaultFlags: 0, owner: null).Should().Be(Errno.None);
        pfns[0].Should().Be(0);
        device.Driver.MigrateToRamCalls.Should().Be(0);

        FaultRetrying(notifier, a, 1, pfns, HmmPfn.RequestFault, owner: new object()).Should().Be(Errno.None);

        device.Driver.MigrateToRamCalls.Should().Be(1);
        Pte pte = _mm.ReadPte(a);
        pte.IsPresent.Should().BeTrue();
        pte.Pfn.Should().NotBe(devicePage);
        _memory.Page(pte.Pfn).IsZoneDevice.Should().BeFalse();
        pfns[0].Should().Be(pte.Pfn.Value | HmmPfn.Valid | HmmPfn.Write);
        HmmPfn.MapOrder(pfns[0]).Should().Be(0);
        _memory.ReadPageData(pte.Pfn).ToArray().Should().OnlyContain(b => b == 0x5A);
        device.Driver.Freed.Should().Equal(devicePage);
        _memory.Page(devicePage).RefCount.Should().Be(0);
    }

    [Fact]
    public void DeviceExclusiveEntriesSnapshotAsZeroAndAFaultRestoresThem()
    {
        ulong a = Map(1);
        _mm.Write(a, [3]);
        Pfn page = _mm.ReadPte(a).Pfn;
        ReplaceEntry(a, Pte.Software(PteKind.DeviceExclusive, page, writable: true));
        MmuIntervalNotifier notifier = Watch(a, 1);
        ulong[] pfns = Filled(1, Sentinel);

        FaultOnce(notifier, a, 1, pfns, defaultFlags: 0).Should().Be(Errno.None);
        pfns[0].Should().Be(0);

        FaultRetrying(notifier, a, 1, pfns, HmmPfn.RequestFault).Should().Be(Errno.None);

        _mm.ReadPte(a).Should().Be(Pte.Present(page, writable: true));
        pfns[0].Should().Be(page.Value | HmmPfn.Valid | HmmPfn.Write);
    }

    [Fact]
    public void MigrationEntriesSnapshotAsZeroAndAFaultWaitsForTheMigrationToFinish()
    {
        ulong a = Map(2);
        _mm.Write(a, Pattern(2 * (int)Page, 4));
        Pfn page = _mm.ReadPte(a + Page).Pfn;
        Pte present = _mm.ReadPte(a + Page);

        // What try_to_migrate leaves: the page locked by the migrator, the entry's mapcount gone, its reference
        // now the migrator's.
        _memory.LockPage(page);
        ReplaceEntry(a + Page, Pte.Software(PteKind.Migration, page, writable: true));
        Interlocked.Decrement(ref _memory.Frame(page)._mapCount);
        MmuIntervalNotifier notifier = Watch(a, 2);
        ulong[] pfns = Filled(2, Sentinel);

        FaultOnce(notifier, a, 2, pfns, defaultFlags: 0).Should().Be(Errno.None);
        pfns[1].Should().Be(0);

        ulong[] faulted = new ulong[2];
        Task<Errno> fault = Threads.Run(() => FaultRetrying(notifier, a, 2, faulted, HmmPfn.RequestFault));
        Threads.IsStillBlocked(fault).Should().BeTrue("the walk waits on the migration entry");

        // The migration is abandoned: the original entry comes back and the page is unlocked.
        Interlocked.Increment(ref _memory.Frame(page)._mapCount);
        ReplaceEntry(a + Page, present);
        _memory.UnlockPage(page);

        Threads.ResultOf(fault).Should().Be(Errno.None);
        faulted[1].Should().Be(page.Value | HmmPfn.Valid | HmmPfn.Write);
        faulted[0].Should().Be(_mm.ReadPte(a).Pfn.Value | HmmPfn.Valid | HmmPfn.Write);
    }

    [Fact]
    public void EntriesBeyondTheRangeAreLeftAlone()
    {
        ulong a = Map(4);
        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] pfns = Filled(6, Sentinel);

        FaultOnce(notifier, a, 4, pfns, HmmPfn.RequestFault).Should().Be(Errno.None);

        pfns[..4].Should().OnlyContain(p => p == (s_zero | HmmPfn.Valid));
        pfns[4..].Should().OnlyContain(p => p == Sentinel);
    }

    public static TheoryData<string> BadInputs => new()
    {
        "null notifier", "unaligned start", "unaligned end", "empty", "end below start", "short array",
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void BadInputThrowsEinvalAndChangesNothing(string what)
    {
        ulong a = Map(4);
        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] pfns = Filled(4, Sentinel);
        (MmuIntervalNotifier? n, ulong start, ulong end, ulong[] array) = what switch
        {
            "null notifier" => ((MmuIntervalNotifier?)null, a, a + (4 * Page), pfns),
            "unaligned start" => (notifier, a + 1, a + (4 * Page), pfns),
            "unaligned end" => (notifier, a, a + (3 * Page) + 1, pfns),
            "empty" => (notifier, a, a, pfns),
            "end below start" => (notifier, a + (2 * Page), a, pfns),
            "short array" => (notifier, a, a + (4 * Page), pfns[..3]),
            _ => throw new ArgumentOutOfRangeException(nameof(what)),
        };
        ulong[] inputBefore = [.. array];

        Action fault = () => FaultLocked(_mm, n, start, end, array, FaultWrite);

        fault.Should().ThrowExactly<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        array.Should().Equal(inputBefore);
        pfns.Should().OnlyContain(p => p == Sentinel);
        CpuPfns(a, 4).Should().OnlyContain(p => p == 0);
    }

    [Fact]
    public void FaultOnAnExitedAddressSpaceThrowsEsrch()
    {
        ulong a = Map(4);
        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] pfns = Filled(4, Sentinel);
        _mm.Exit();

        Action fault = () =>
        {
            var range = new HmmRange { Notifier = notifier, Start = a, End = a + (4 * Page), HmmPfns = pfns, DefaultFlags = FaultWrite };
            range.Fault();
        };

        fault.Should().ThrowExactly<HmmException>().Which.Error.Should().Be(Errno.ESRCH);
        pfns.Should().OnlyContain(p => p == Sentinel);
    }

    [Fact]
    public void FaultWithoutTheMmapLockIsAKernelBug()
    {
        ulong a = Map(4);
        MmuIntervalNotifier notifier = Watch(a, 4);
        ulong[] pfns = Filled(4, Sentinel);

        Action fault = () =>
        {
            var range = new HmmRange { Notifier = notifier, Start = a, End = a + (4 * Page), HmmPfns = pfns, DefaultFlags = FaultWrite };
            range.NotifierSequence = notifier.ReadBegin();
            range.Fault();
        };

        fault.Should().Throw<KernelBugException>();
        pfns.Should().OnlyContain(p => p == Sentinel);
        CpuPfns(a, 4).Should().OnlyContain(p => p == 0);
    }

    [Fact]
    public void InsertOnAnExitedAddressSpaceThrowsEinvalAndChangesNothing()
    {
        var fresh = new Mm(_memory, "fresh");
        fresh.Exit();
        Action insertFresh = () => MmuIntervalNotifier.Insert(fresh, Base, Page, new SequenceOnlyOps());
        insertFresh.Should().ThrowExactly<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        fresh.Notifiers.Should().BeNull("no subscriptions were created for the dead address space");

        ulong a = Map(4);
        MmuNotifierSubscriptions subscriptions = Watch(a, 4).Subscriptions;
        _mm.Exit();
        ulong sequence = subscriptions.InvalidateSequence;

        Action insert = () => MmuIntervalNotifier.Insert(_mm, a, Page, new SequenceOnlyOps());

        insert.Should().ThrowExactly<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        subscriptions.IntervalTreeCount.Should().Be(1);
        subscriptions.InvalidateSequence.Should().Be(sequence);
    }

    [Fact]
    public void FaultOverAPopulatedRangeAllocatesNothing()
    {
        const int pages = 512;
        ulong a = Map(pages);
        _mm.Write(a, Pattern(pages * (int)Page, 11));
        MmuIntervalNotifier notifier = Watch(a, pages);
        ulong[] pfns = new ulong[pages];
        for (int i = 0; i < 3; i++)
        {
            MeasuredFault(notifier, a, pfns).Should().Be(Errno.None);
        }

        int failures = 0;
        long allocated = AllocationProbe.FewestBytesAllocated(() =>
        {
            for (int i = 0; i < 100; i++)
            {
                failures += MeasuredFault(notifier, a, pfns) == Errno.None ? 0 : 1;
            }
        });

        failures.Should().Be(0);
        allocated.Should().Be(0, "hmm_range_fault over a populated range must not allocate");
        pfns.Should().OnlyContain(p => (p & (HmmPfn.Valid | HmmPfn.Write)) == (HmmPfn.Valid | HmmPfn.Write));
    }

    [Fact]
    public void DmirrorFaultOverAPopulatedRangeAllocatesNothing()
    {
        const int pages = 512;
        ulong a = Map(pages);
        _mm.Write(a, Pattern(pages * (int)Page, 12));
        using var client = new DmirrorClient(_mm, a, pages * Page);
        for (int i = 0; i < 3; i++)
        {
            client.Fault(a, a + (pages * Page), write: true).Should().Be(Errno.None);
        }

        int failures = 0;
        long allocated = AllocationProbe.FewestBytesAllocated(() =>
        {
            for (int i = 0; i < 100; i++)
            {
                failures += client.Fault(a, a + (pages * Page), write: true) == Errno.None ? 0 : 1;
            }
        });

        failures.Should().Be(0);
        allocated.Should().Be(0, "the whole driver protocol over a populated range must not allocate");
        client.MappedPages.Should().Be(pages);
    }

    private static Errno MeasuredFault(MmuIntervalNotifier notifier, ulong start, ulong[] pfns)
    {
        var range = new HmmRange
        {
            Notifier = notifier,
            Start = start,
            End = start + ((ulong)pfns.Length * Page),
            HmmPfns = pfns,
            DefaultFlags = FaultWrite,
        };
        range.NotifierSequence = notifier.ReadBegin();
        using MmapLockGuard guard = notifier.Mm.MmapReadLock();
        return range.Fault();
    }

    private ulong Map(ulong pages, Protection protection = Protection.ReadWrite, ulong at = Base) =>
        _mm.Mmap(at, pages * Page, protection, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);

    private MmuIntervalNotifier Watch(ulong start, ulong pages) => MmuIntervalNotifier.Insert(_mm, start, pages * Page, new SequenceOnlyOps());

    /// <summary>One attempt: read-begin (or the given sequence), mmap read lock, <c>hmm_range_fault</c>.</summary>
    private static Errno FaultOnce(MmuIntervalNotifier notifier, ulong start, ulong pages, ulong[] pfns, ulong defaultFlags, ulong mask = 0, object? owner = null, ulong? sequence = null)
    {
        var range = new HmmRange
        {
            Notifier = notifier,
            Start = start,
            End = start + (pages * Page),
            HmmPfns = pfns,
            DefaultFlags = defaultFlags,
            PfnFlagsMask = mask,
            DevicePrivateOwner = owner,
        };
        range.NotifierSequence = sequence ?? notifier.ReadBegin();
        using MmapLockGuard guard = notifier.Mm.MmapReadLock();
        return range.Fault();
    }

    /// <summary>The caller protocol: retry on EBUSY from a fresh read-begin with the original inputs (bounded).</summary>
    private static Errno FaultRetrying(MmuIntervalNotifier notifier, ulong start, ulong pages, ulong[] pfns, ulong defaultFlags, ulong mask = 0, object? owner = null)
    {
        ulong[] input = [.. pfns];
        for (int attempt = 0; attempt < 100; attempt++)
        {
            input.CopyTo(pfns, 0);
            Errno result = FaultOnce(notifier, start, pages, pfns, defaultFlags, mask, owner);
            if (result != Errno.EBUSY)
            {
                return result;
            }
        }

        return Errno.EBUSY;
    }

    private static Errno FaultLocked(Mm mm, MmuIntervalNotifier? notifier, ulong start, ulong end, ulong[] pfns, ulong defaultFlags)
    {
        var range = new HmmRange { Notifier = notifier!, Start = start, End = end, HmmPfns = pfns, DefaultFlags = defaultFlags };
        using MmapLockGuard guard = mm.MmapReadLock();
        return range.Fault();
    }

    private void ReplaceEntry(ulong address, Pte pte)
    {
        PteTable table = _mm.PageTable.Find(address)!;
        lock (table.Lock)
        {
            table.SetUnsynchronized(PageTable.PteIndex(address), pte);
        }
    }

    private ulong[] CpuPfns(ulong start, int pages)
    {
        var pfns = new ulong[pages];
        for (int i = 0; i < pages; i++)
        {
            Pte pte = _mm.ReadPte(start + ((ulong)i * Page));
            pfns[i] = pte.IsNone ? 0 : pte.Pfn.Value;
        }

        return pfns;
    }

    private static byte[] ReadCpu(Mm mm, ulong start, int pages)
    {
        var bytes = new byte[pages * (int)Page];
        mm.Read(start, bytes);
        return bytes;
    }

    private static ulong[] Filled(int count, ulong value) => Enumerable.Repeat(value, count).ToArray();

    private static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>An interval callback that only records the invalidation (the snapshot notifier of test_hmm).</summary>
    private sealed class SequenceOnlyOps : IMmuIntervalNotifierOps
    {
        private readonly Lock _lock = new();

        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            lock (_lock)
            {
                subscription.SetSequence(currentSequence);
            }

            return true;
        }
    }

    /// <summary>A device-private pagemap whose driver migrates pages back by hand, and a way to plant its pages.</summary>
    private sealed class DeviceFixture
    {
        private readonly PhysicalMemory _memory;
        private readonly DevPagemap _pagemap;
        private ulong _next;

        public DeviceFixture(PhysicalMemory memory)
        {
            _memory = memory;
            Driver = new HandMigratingDriver();
            _pagemap = Memremap.Map(memory, new DevPagemapOptions
            {
                Type = MemoryType.DevicePrivate,
                Ranges = [TestKit.DeviceRange(0)],
                Owner = Driver.Owner,
                Ops = Driver,
                Name = "hand-migrating",
            });
        }

        public HandMigratingDriver Driver { get; }

        /// <summary>Installs a device-private entry at <paramref name="address"/>: the entry holds the page's reference and its mapcount.</summary>
        public Pfn Plant(Mm mm, ulong address, bool writable, byte fill)
        {
            Pfn pfn = _pagemap.Ranges[0].StartPfn + _next++;
            _pagemap.InitDevicePage(pfn);
            _memory.PageData(pfn).Fill(fill);
            using (mm.MmapWriteLock())
            {
                Vma vma = mm.FindVma(address)!;
                ref PageFrame frame = ref _memory.Frame(pfn);
                frame._mapping = vma.AnonVma!.Handle;
                frame._index = vma.PageIndex(address);
                frame._mapCount = 1;
                PteTable table = mm.PageTable.FindOrAllocate(address);
                lock (table.Lock)
                {
                    table.SetUnsynchronized(PageTable.PteIndex(address), Pte.Software(PteKind.DevicePrivate, pfn, writable));
                }
            }

            _memory.UnlockPage(pfn);
            return pfn;
        }
    }

    /// <summary>Driver ops whose <c>migrate_to_ram</c> copies the page into new RAM and swaps the entry, notifying as a migration.</summary>
    private sealed class HandMigratingDriver : IDevPagemapOps
    {
        private int _migrateToRamCalls;

        public object Owner { get; } = new();

        public int MigrateToRamCalls => Volatile.Read(ref _migrateToRamCalls);

        public List<Pfn> Freed { get; } = [];

        public void PageFree(DevPagemap pagemap, Pfn pfn)
        {
            lock (Freed)
            {
                Freed.Add(pfn);
            }
        }

        public VmFaultResult MigrateToRam(in DevicePrivateFault fault)
        {
            Interlocked.Increment(ref _migrateToRamCalls);
            Mm mm = fault.Mm;
            PhysicalMemory memory = mm.Memory;
            if (!memory.TryAllocatePage(out Pfn ram))
            {
                return VmFaultResult.Oom;
            }

            memory.PageData(fault.Page).CopyTo(memory.PageData(ram));
            Vma vma = mm.FindVma(fault.Address)!;
            ref PageFrame frame = ref memory.Frame(ram);
            frame._mapping = vma.AnonVma!.Handle;
            frame._index = vma.PageIndex(fault.Address);
            frame._mapCount = 1;
            Interlocked.Or(ref frame._flags, (ulong)(PageFlags.Anon | PageFlags.AnonExclusive | PageFlags.SwapBacked | PageFlags.Uptodate));

            var range = new MmuNotifierRange(fault.Address, fault.Address + Page, MmuNotifierEvent.Migrate, Owner: Owner);
            mm.InvalidateRangeStart(range);
            PteTable table = mm.PageTable.Find(fault.Address)!;
            int index = PageTable.PteIndex(fault.Address);
            bool replaced;
            lock (table.Lock)
            {
                Pte pte = table.Read(index);
                replaced = pte.Kind == PteKind.DevicePrivate && pte.Pfn == fault.Page;
                if (replaced)
                {
                    table.SetUnsynchronized(index, Pte.Present(ram, pte.IsWritable, dirty: pte.IsWritable));
                }
            }

            mm.InvalidateRangeEnd(range);
            if (replaced)
            {
                Interlocked.Decrement(ref memory.Frame(fault.Page)._mapCount);
                memory.PutPage(fault.Page);
            }
            else
            {
                frame._mapCount = 0;
                memory.PutPage(ram);
            }

            return VmFaultResult.None;
        }
    }
}
