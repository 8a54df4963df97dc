using FluentAssertions;
using Hmm.Tests.AddressSpace;
using Xunit;

namespace Hmm.Tests.Migration;

/// <summary>What happens between setup and finalize: other processes' munmap and mprotect, CPU faults into holes, device-to-device moves, pins.</summary>
public class MigrationRaceTests
{
    private const ulong Page = MigrationTestKit.Page;

    private readonly PhysicalMemory _memory = MigrationTestKit.NewMemory();
    private readonly ulong _freeRamAtStart;
    private readonly MigrationTestDriver _driver;

    public MigrationRaceTests()
    {
        _freeRamAtStart = _memory.FreeRamPages;
        _driver = new MigrationTestDriver(_memory);
    }

    [Theory]
    [InlineData("munmap")]
    [InlineData("mprotect")]
    [InlineData("exit")]
    public void TheForkedChildChangingItsMappingsBetweenSetupAndFinalizeLosesNothing(string change)
    {
        var parent = new Mm(_memory, "parent");
        ulong a = parent.MapAnonymous(4);
        TestKit.Fill(parent, a, 4, seed: 60);
        Mm child = parent.Fork();
        var src = new ulong[4];
        var dst = new ulong[4];
        using (parent.MmapReadLock())
        {
            var args = new MigrateVma { Vma = parent.FindVma(a), Start = a, End = a + (4 * Page), Src = src, Dst = dst, PgmapOwner = _driver.Owner, Flags = MigrateVmaSelect.System };
            Migrate.VmaSetup(ref args);
            args.CPages.Should().Be(4, "the child's shared mappings became migration entries too");
            child.ReadPte(a).Kind.Should().Be(PteKind.Migration);

            // Another process needs no lock the migration holds.
            var other = new TestThread<bool>(() =>
            {
                switch (change)
                {
                    case "munmap": child.Munmap(a + Page, 2 * Page); break;
                    case "mprotect": child.Mprotect(a, 2 * Page, Protection.Read); break;
                    default: child.Exit(); break;
                }

                return true;
            });
            other.Join(TimeSpan.FromSeconds(60)).Should().BeTrue();
            other.Result.Should().BeTrue();
            for (int i = 0; i < 4; i++)
            {
                _driver.TryAllocateDevicePage(out Pfn device).Should().BeTrue();
                MigratePfn.TryGetPage(src[i], out Pfn source).Should().BeTrue();
                _memory.PageData(source).CopyTo(_memory.PageData(device));
                dst[i] = MigratePfn.FromPfn(device);
            }

            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
            src.Should().OnlyContain(e => MigratePfn.IsMigrating(e));
        }

        for (ulong i = 0; i < 4; i++)
        {
            parent.IsOnDevice(a + (i * Page), _driver).Should().BeTrue();
        }

        parent.ShouldBeAccounted(a, 4);
        parent.ShouldHold(a, 4, seed: 60);
        if (change != "exit")
        {
            child.ShouldBeAccounted(a, 4);
            child.ReadPte(a).Kind.Should().Be(PteKind.Present, "the CPU reads of the parent brought the shared pages back");
            TestKit.ReadBytes(child, a, Page).Should().Equal(TestKit.Pattern(a, (int)Page, seed: 60));
            if (change == "munmap")
            {
                child.ReadPte(a + Page).IsNone.Should().BeTrue();
            }
            else
            {
                Action write = () => child.Write(a, [1]);
                write.ShouldSegfault();
            }

            Accounting.ShouldBeConsistent(_memory, [parent, child], because: change);
            child.Exit();
        }

        Accounting.ShouldBeConsistent(_memory, [parent], because: change);
        parent.Exit();
        Accounting.ShouldBeConsistent(_memory, [], because: change);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void ACpuFaultThatFillsAHoleBeforePagesWinsAndTheDevicePageIsFreed()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        var src = new ulong[2];
        var dst = new ulong[2];
        using (mm.MmapReadLock())
        {
            var args = new MigrateVma { Vma = mm.FindVma(a), Start = a, End = a + (2 * Page), Src = src, Dst = dst, PgmapOwner = _driver.Owner, Flags = MigrateVmaSelect.System };
            Migrate.VmaSetup(ref args);
            src.Should().Equal(MigratePfn.Migrate, MigratePfn.Migrate);
            var writer = new TestThread<bool>(() =>
            {
                mm.Write(a + 3, [0x42]);
                return true;
            });
            writer.Join(TimeSpan.FromSeconds(60)).Should().BeTrue();
            writer.Result.Should().BeTrue();
            for (int i = 0; i < 2; i++)
            {
                _driver.TryAllocateDevicePage(out Pfn device).Should().BeTrue();
                _memory.PageData(device).Clear();
                dst[i] = MigratePfn.FromPfn(device);
            }

            Migrate.VmaPages(ref args);
            src.Should().Equal(0UL, MigratePfn.Migrate);
            Migrate.VmaFinalize(ref args);
        }

        mm.ReadPte(a).Kind.Should().Be(PteKind.Present, "the CPU fault won");
        mm.IsOnDevice(a + Page, _driver).Should().BeTrue();
        TestKit.ReadBytes(mm, a, 4).Should().Equal(0, 0, 0, 0x42);
        mm.ShouldBeAccounted(a, 2);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void PagesMoveDirectlyFromOneDeviceToAnother()
    {
        var mm = new Mm(_memory);
        var second = new MigrationTestDriver(_memory, "gpu1");
        ulong a = mm.MapAnonymous(3);
        TestKit.Fill(mm, a, 3, seed: 61);
        _driver.MigrateToDevice(mm, a, a + (3 * Page)).Should().Be(3);
        var src = new ulong[3];
        var dst = new ulong[3];
        using (mm.MmapReadLock())
        {
            // The second driver collects the first one's pages by naming their owner, as a peer-aware driver would.
            var args = new MigrateVma { Vma = mm.FindVma(a), Start = a, End = a + (3 * Page), Src = src, Dst = dst, PgmapOwner = _driver.Owner, Flags = MigrateVmaSelect.DevicePrivate };
            Migrate.VmaSetup(ref args);
            args.CPages.Should().Be(3);
            for (int i = 0; i < 3; i++)
            {
                second.TryAllocateDevicePage(out Pfn device).Should().BeTrue();
                MigratePfn.TryGetPage(src[i], out Pfn source).Should().BeTrue();
                _memory.PageData(source).CopyTo(_memory.PageData(device));
                dst[i] = MigratePfn.FromPfn(device) | MigratePfn.Write;
            }

            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
        }

        for (ulong i = 0; i < 3; i++)
        {
            mm.IsOnDevice(a + (i * Page), second).Should().BeTrue();
        }

        _driver.FreePageCount.Should().Be(_driver.InitialFreePages, "the first device's pages were freed through its page-free");
        mm.ShouldBeAccounted(a, 3);
        mm.ShouldHold(a, 3, seed: 61);
        second.MigrateToRamCalls.Should().Be(3);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        second.FreePageCount.Should().Be(second.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void ALongTermPinOfADevicePrivatePageMigratesItToRamFirstAndMigrationThenSkipsIt()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 62);
        _driver.MigrateToDevice(mm, a, a + (2 * Page)).Should().Be(2);
        var pinned = new Pfn[1];

        mm.PinUserPages(a, GupFlags.Write | GupFlags.LongTerm, pinned).Should().Be(1);

        _memory.Page(pinned[0]).IsZoneDevice.Should().BeFalse("device memory is never pinned");
        _driver.MigrateToRamCalls.Should().Be(1);
        _driver.MigrateToDevice(mm, a, a + (2 * Page)).Should().Be(0, "the pinned page is skipped, the other is already there");
        mm.ReadPte(a).Pfn.Should().Be(pinned[0], "the pinned page keeps its mapping");
        mm.ShouldHold(a, 2, seed: 62);
        mm.UnpinUserPages(pinned);
        mm.ShouldBeAccounted(a, 2);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void ALongTermPinOfACoherentPageMovesItToRamWhileAShortTermGetLeavesItThere()
    {
        var mm = new Mm(_memory);
        var coherent = new MigrationTestDriver(_memory, "cxl", MemoryType.DeviceCoherent);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 63);
        coherent.MigrateToDevice(mm, a, a + (2 * Page)).Should().Be(2);
        Pfn device = mm.ReadPte(a + Page).Pfn;
        var got = new Pfn[1];
        var pinned = new Pfn[1];

        mm.GetUserPages(a + Page, GupFlags.None, got).Should().Be(1);
        got[0].Should().Be(device, "a short-term reference may stay on coherent memory");
        _memory.PutPage(got[0]);
        mm.PinUserPages(a, GupFlags.Write | GupFlags.LongTerm, pinned).Should().Be(1);

        _memory.Page(pinned[0]).IsZoneDevice.Should().BeFalse("coherent memory is never pinned long-term");
        mm.ReadPte(a).Pfn.Should().Be(pinned[0]);
        coherent.Pagemap.Contains(mm.ReadPte(a + Page).Pfn).Should().BeTrue();
        coherent.FreePageCount.Should().Be(coherent.InitialFreePages - 1, "the moved page went back to the device's free list");
        mm.ShouldHold(a, 2, seed: 63);
        mm.UnpinUserPages(pinned);
        mm.ShouldBeAccounted(a, 2);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        coherent.FreePageCount.Should().Be(coherent.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void ALongTermPinOfAHeldCoherentPageFailsWithEbusyAndChangesNothing()
    {
        var mm = new Mm(_memory);
        var coherent = new MigrationTestDriver(_memory, "cxl", MemoryType.DeviceCoherent);
        ulong a = mm.MapAnonymous(1);
        TestKit.Fill(mm, a, 1, seed: 64);
        coherent.MigrateToDevice(mm, a, a + Page).Should().Be(1);
        Pte before = mm.ReadPte(a);
        _memory.GetPage(before.Pfn);
        var pinned = new Pfn[1];

        Action pin = () => mm.PinUserPages(a, GupFlags.Write | GupFlags.LongTerm, pinned);

        pin.ShouldFailWith(Errno.EBUSY);
        mm.ReadPte(a).Should().Be(before);
        _memory.PageRefCount(before.Pfn).Should().Be(2, "the mapping's and the holder's: the failed pin left none");
        _memory.IsPageLocked(before.Pfn).Should().BeFalse();
        _memory.PutPage(before.Pfn);
        mm.ShouldHold(a, 1, seed: 64);
        mm.ShouldBeAccounted(a, 1);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        coherent.FreePageCount.Should().Be(coherent.InitialFreePages);
    }
}
