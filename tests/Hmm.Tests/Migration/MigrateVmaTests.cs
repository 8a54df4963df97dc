using FluentAssertions;
using Hmm.Tests.AddressSpace;
using Xunit;

namespace Hmm.Tests.Migration;

public class MigrateVmaTests
{
    private const ulong Page = MigrationTestKit.Page;

    private readonly PhysicalMemory _memory = MigrationTestKit.NewMemory();
    private readonly ulong _freeRamAtStart;
    private readonly MigrationTestDriver _driver;

    public MigrateVmaTests()
    {
        _freeRamAtStart = _memory.FreeRamPages;
        _driver = new MigrationTestDriver(_memory);
    }

    [Fact]
    public void RamToDeviceAndBackKeepsEveryByteAndReturnsEveryPage()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(8);
        TestKit.Fill(mm, a, 8, seed: 1);

        _driver.MigrateToDevice(mm, a, a + (8 * Page)).Should().Be(8);

        for (ulong i = 0; i < 8; i++)
        {
            mm.IsOnDevice(a + (i * Page), _driver).Should().BeTrue($"page {i} moved to the device");
        }

        _memory.FreeRamPages.Should().Be(_freeRamAtStart, "the RAM pages were freed once their data moved");
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages - 8);
        mm.ShouldBeAccounted(a, 8);

        _driver.MigrateToSystem(mm, a, a + (4 * Page)).Should().Be(4);
        mm.ShouldHold(a, 8, seed: 1);
        _driver.MigrateToRamCalls.Should().Be(4, "the CPU faulted back only the pages still on the device");
        mm.ShouldBeAccounted(a, 8);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages, "every device page went back to the free list");

        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void CpuFaultOnADevicePageMigratesItBackWithTheDriversMigrateToRam()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 2);
        _driver.MigrateToDevice(mm, a, a + (2 * Page));

        mm.Write(a + Page + 10, [0xAB]);

        _driver.MigrateToRamCalls.Should().Be(1);
        mm.ReadPte(a + Page).Kind.Should().Be(PteKind.Present);
        mm.IsOnDevice(a, _driver).Should().BeTrue("the neighbour was not touched");
        byte[] expected = TestKit.Pattern(a, (int)(2 * Page), seed: 2);
        expected[Page + 10] = 0xAB;
        TestKit.ReadBytes(mm, a, 2 * Page).Should().Equal(expected);
        mm.ShouldBeAccounted(a, 2);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void SetupCollectsHolesAndTheZeroPageOnlyAsTheKernelDoes()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(4);
        TestKit.ReadBytes(mm, a + Page, 1);
        TestKit.Fill(mm, a + (2 * Page), 1, seed: 3);
        Pfn written = mm.ReadPte(a + (2 * Page)).Pfn;
        Span<ulong> src = stackalloc ulong[4];
        Span<ulong> dst = stackalloc ulong[4];

        using (mm.MmapReadLock())
        {
            var args = new MigrateVma { Vma = mm.FindVma(a), Start = a, End = a + (4 * Page), Src = src, Dst = dst, PgmapOwner = _driver.Owner, Flags = MigrateVmaSelect.System };
            Migrate.VmaSetup(ref args);
            args.NPages.Should().Be(4);
            args.CPages.Should().Be(4, "two holes, the zero page and one RAM page");
            src.ToArray().Should().Equal(
                MigratePfn.Migrate,
                MigratePfn.Migrate,
                MigratePfn.FromPfn(written) | MigratePfn.Migrate | MigratePfn.Write,
                MigratePfn.Migrate);
            mm.ReadPte(a + (2 * Page)).Kind.Should().Be(PteKind.Migration);
            mm.ReadPte(a + Page).Pfn.Should().Be(PhysicalMemory.ZeroPage, "the zero page stays mapped until a page replaces it");
            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
            src.ToArray().Should().OnlyContain(e => !MigratePfn.IsMigrating(e), "no destination, nothing migrated");

            var withoutSystem = new MigrateVma { Vma = mm.FindVma(a), Start = a, End = a + (4 * Page), Src = src, Dst = dst, PgmapOwner = _driver.Owner, Flags = MigrateVmaSelect.DevicePrivate };
            Migrate.VmaSetup(ref withoutSystem);
            withoutSystem.CPages.Should().Be(2, "without SYSTEM only the holes are collected");
            src.ToArray().Should().Equal(MigratePfn.Migrate, 0UL, 0UL, MigratePfn.Migrate);
            Migrate.VmaPages(ref withoutSystem);
            Migrate.VmaFinalize(ref withoutSystem);
        }

        mm.ReadPte(a).IsNone.Should().BeTrue();
        mm.ReadPte(a + Page).Pfn.Should().Be(PhysicalMemory.ZeroPage);
        mm.ReadPte(a + (2 * Page)).Should().Be(Pte.Present(written, writable: true, dirty: true));
        mm.ShouldHoldFrom(a + (2 * Page), 1, a + (2 * Page), seed: 3);
        mm.ShouldBeAccounted(a, 4);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void HolesAndTheZeroPageGetFreshDevicePagesThatReadAsZeros()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(3);
        TestKit.ReadBytes(mm, a + Page, 1);

        _driver.MigrateToDevice(mm, a, a + (3 * Page)).Should().Be(3);

        for (ulong i = 0; i < 3; i++)
        {
            mm.IsOnDevice(a + (i * Page), _driver).Should().BeTrue();
            mm.ReadPte(a + (i * Page)).IsWritable.Should().BeTrue("the area is writable");
        }

        mm.ShouldBeAccounted(a, 3);
        mm.ShouldReadZeros(a, 3);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void HolesOfFileAndSharedAreasAreNotCollected()
    {
        var mm = new Mm(_memory);
        SimFile file = TestKit.PatternFile(_memory, 2, seed: 4);
        ulong privateFile = mm.Mmap(0, 2 * Page, Protection.ReadWrite, MapFlags.Private, file);
        ulong shared = mm.Mmap(0, 2 * Page, Protection.ReadWrite, TestKit.SharedAnonymous);
        TestKit.ReadBytes(mm, privateFile, 1);
        TestKit.ReadBytes(mm, shared, 1);

        (ulong CPages, ulong[] Src) Collect(ulong start)
        {
            var src = new ulong[2];
            var dst = new ulong[2];
            using MmapLockGuard guard = mm.MmapReadLock();
            var args = new MigrateVma { Vma = mm.FindVma(start), Start = start, End = start + (2 * Page), Src = src, Dst = dst, Flags = MigrateVmaSelect.System };
            Migrate.VmaSetup(ref args);
            ulong cpages = args.CPages;
            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
            return (cpages, src);
        }

        (ulong filePages, ulong[] fileSrc) = Collect(privateFile);
        filePages.Should().Be(1, "the mapped file page is collected (it would be refused at the pages step for device memory), the hole is not");
        fileSrc[1].Should().Be(0);
        (ulong sharedPages, ulong[] sharedSrc) = Collect(shared);
        sharedPages.Should().Be(1, "a shared anonymous area is shmem: its hole is not collected");
        sharedSrc[1].Should().Be(0);
        mm.ShouldHoldFrom(privateFile, 2, 0, seed: 4);
        mm.ShouldBeAccounted(shared, 2, extraReferences: 1);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, [], files: [file]);
    }

    [Fact]
    public void AFilePageIsCollectedButRefusedWhenTheDestinationIsDeviceMemory()
    {
        var mm = new Mm(_memory);
        SimFile file = TestKit.PatternFile(_memory, 1, seed: 5);
        ulong a = mm.Mmap(0, Page, Protection.Read, MapFlags.Private, file);
        TestKit.ReadBytes(mm, a, 1);
        Pte before = mm.ReadPte(a);

        _driver.MigrateToDevice(mm, a, a + Page).Should().Be(0);

        mm.ReadPte(a).Should().Be(before);
        mm.ShouldHoldFrom(a, 1, 0, seed: 5);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages, "the unused destination was freed through the pagemap");
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, [], files: [file]);
    }

    [Fact]
    public void DeclinedPagesStayInRamWithTheirBytes()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(6);
        TestKit.Fill(mm, a, 6, seed: 6);
        Pfn[] before = [.. Enumerable.Range(0, 6).Select(i => mm.ReadPte(a + ((ulong)i * Page)).Pfn)];
        _driver.Decline = i => i % 2 == 1;

        _driver.MigrateToDevice(mm, a, a + (6 * Page)).Should().Be(3);

        for (int i = 0; i < 6; i++)
        {
            ulong address = a + ((ulong)i * Page);
            if (i % 2 == 1)
            {
                mm.ReadPte(address).Should().Be(Pte.Present(before[i], writable: true, dirty: true), $"page {i} was declined");
            }
            else
            {
                mm.IsOnDevice(address, _driver).Should().BeTrue();
            }
        }

        mm.ShouldBeAccounted(a, 6);
        mm.ShouldHold(a, 6, seed: 6);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void DestinationAllocationFailureLeavesThosePagesInRam()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(4);
        TestKit.Fill(mm, a, 4, seed: 7);
        _driver.FailAllocations(2);

        _driver.MigrateToDevice(mm, a, a + (4 * Page)).Should().Be(2);

        mm.ReadPte(a).Kind.Should().Be(PteKind.Present);
        mm.ReadPte(a + Page).Kind.Should().Be(PteKind.Present);
        mm.IsOnDevice(a + (2 * Page), _driver).Should().BeTrue();
        mm.IsOnDevice(a + (3 * Page), _driver).Should().BeTrue();
        mm.ShouldBeAccounted(a, 4);
        mm.ShouldHold(a, 4, seed: 7);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void APageWithAnExtraReferenceOrAPinIsSkippedAndStaysIntact()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(3);
        TestKit.Fill(mm, a, 3, seed: 8);
        Pfn referenced = mm.ReadPte(a).Pfn;
        Pfn[] pinned = new Pfn[1];
        mm.PinUserPages(a + Page, GupFlags.Write | GupFlags.LongTerm, pinned).Should().Be(1);
        _memory.GetPage(referenced);
        Pte referencedPte = mm.ReadPte(a);
        Pte pinnedPte = mm.ReadPte(a + Page);
        var src = new ulong[3];
        var dst = new ulong[3];

        using (mm.MmapReadLock())
        {
            var args = new MigrateVma { Vma = mm.FindVma(a), Start = a, End = a + (3 * Page), Src = src, Dst = dst, PgmapOwner = _driver.Owner, Flags = MigrateVmaSelect.System };
            Migrate.VmaSetup(ref args);
            args.CPages.Should().Be(1, "only the page nobody else holds migrates");
            src[0].Should().Be(0, "an extra reference looks like a pin: the page is restored at once");
            src[1].Should().Be(0, "a pinned exclusive page is not even collected");
            mm.ReadPte(a).Should().Be(referencedPte, "its entry is back before setup returns");
            mm.ReadPte(a + Page).Should().Be(pinnedPte);
            _memory.IsPageLocked(referenced).Should().BeFalse();
            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
        }

        _memory.PageRefCount(referenced).Should().Be(2);
        _memory.PageRefCount(pinned[0]).Should().Be(1 + Mm.PinCountingBias);
        mm.ShouldHold(a, 3, seed: 8);
        _memory.PutPage(referenced);
        mm.UnpinUserPages(pinned);

        _driver.MigrateToDevice(mm, a, a + (3 * Page)).Should().Be(3, "released, both pages migrate");
        mm.ShouldHold(a, 3, seed: 8);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void ALockedPageIsNotMigratedAndKeepsItsMapping()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 9);
        Pfn locked = mm.ReadPte(a).Pfn;
        Pte lockedPte = mm.ReadPte(a);
        _memory.LockPage(locked);

        _driver.MigrateToDevice(mm, a, a + (2 * Page)).Should().Be(1);

        mm.ReadPte(a).Should().Be(lockedPte);
        _memory.IsPageLocked(locked).Should().BeTrue("the other holder's lock is untouched");
        _memory.UnlockPage(locked);
        mm.ShouldBeAccounted(a, 2);
        mm.ShouldHold(a, 2, seed: 9);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void NotifiersSeeOneMigrateInvalidationWithTheOwner()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 10);
        OwnerRecordingChain chain = OwnerRecordingChain.InstallOn(mm);

        _driver.MigrateToDevice(mm, a, a + (2 * Page));

        chain.Starts.Should().Equal(new MmuNotifierRange(a, a + (2 * Page), MmuNotifierEvent.Migrate, Owner: _driver.Owner));
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
    }

    [Fact]
    public void DevicePagesOfAnotherOwnerAreNotCollected()
    {
        var mm = new Mm(_memory);
        var other = new MigrationTestDriver(_memory, "other");
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 11);
        other.MigrateToDevice(mm, a, a + (2 * Page)).Should().Be(2);

        _driver.MigrateToSystem(mm, a, a + (2 * Page)).Should().Be(0, "the pages belong to the other device");

        mm.IsOnDevice(a, other).Should().BeTrue();
        mm.ShouldHold(a, 2, seed: 11);
        other.MigrateToRamCalls.Should().Be(2, "the CPU read faulted them back through their own driver");
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        other.FreePageCount.Should().Be(other.InitialFreePages);
    }

    [Fact]
    public void MigrationToACoherentDeviceKeepsTheCpuMappingPresent()
    {
        var mm = new Mm(_memory);
        var coherent = new MigrationTestDriver(_memory, "cxl", MemoryType.DeviceCoherent);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 12);

        coherent.MigrateToDevice(mm, a, a + (2 * Page)).Should().Be(2);

        mm.ReadPte(a).Kind.Should().Be(PteKind.Present, "coherent memory is CPU-accessible");
        coherent.Pagemap.Contains(mm.ReadPte(a).Pfn).Should().BeTrue();
        mm.ShouldHold(a, 2, seed: 12);
        coherent.MigrateToRamCalls.Should().Be(0);
        coherent.MigrateToSystem(mm, a, a + (2 * Page)).Should().Be(2);
        _memory.Page(mm.ReadPte(a).Pfn).IsZoneDevice.Should().BeFalse();
        mm.ShouldHold(a, 2, seed: 12);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        coherent.FreePageCount.Should().Be(coherent.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }
}
