using FluentAssertions;
using Hmm.Tests.AddressSpace;
using Xunit;

namespace Hmm.Tests.Migration;

public class DeviceExclusiveTests
{
    private const ulong Page = MigrationTestKit.Page;

    private readonly PhysicalMemory _memory = MigrationTestKit.NewMemory();
    private readonly ulong _freeRamAtStart;
    private readonly object _owner = new();

    public DeviceExclusiveTests()
    {
        _freeRamAtStart = _memory.FreeRamPages;
    }

    [Fact]
    public void AnExclusivePageComesBackLockedAndACpuAccessRestoresTheSameMapping()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 80);
        Pfn before = mm.ReadPte(a).Pfn;
        OwnerRecordingChain chain = OwnerRecordingChain.InstallOn(mm);

        Errno error;
        Pfn page;
        using (mm.MmapReadLock())
        {
            error = DeviceExclusive.Make(mm, a, _owner, out page);
        }

        error.Should().Be(Errno.None);
        page.Should().Be(before);
        mm.ReadPte(a).Kind.Should().Be(PteKind.DeviceExclusive);
        _memory.IsPageLocked(page).Should().BeTrue();
        _memory.PageRefCount(page).Should().Be(2, "the entry's and the caller's");
        _memory.Page(page).MapCount.Should().Be(1);
        chain.Starts.Should().Equal(new MmuNotifierRange(a, a + Page, MmuNotifierEvent.Exclusive, Owner: _owner));
        _memory.UnlockPage(page);
        _memory.PutPage(page);

        mm.ShouldHold(a, 2, seed: 80);

        mm.ReadPte(a).Should().Be(Pte.Present(before, writable: true), "the CPU access restored the original mapping");
        chain.Starts.Should().HaveCount(2, "the device was told its exclusive access ended");
        mm.ShouldBeAccounted(a, 2);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void AnUntouchedOrCopyOnWritePageIsWriteFaultedFirst()
    {
        var parent = new Mm(_memory, "parent");
        ulong a = parent.MapAnonymous(2);
        TestKit.Fill(parent, a + Page, 1, seed: 81);
        Mm child = parent.Fork();

        using (child.MmapReadLock())
        {
            DeviceExclusive.Make(child, a, _owner, out Pfn fresh).Should().Be(Errno.None);
            _memory.UnlockPage(fresh);
            _memory.PutPage(fresh);
            DeviceExclusive.Make(child, a + Page, _owner, out Pfn copy).Should().Be(Errno.None);
            copy.Should().NotBe(parent.ReadPte(a + Page).Pfn, "copy-on-write was broken for the child");
            _memory.UnlockPage(copy);
            _memory.PutPage(copy);
        }

        child.ShouldReadZeros(a, 1);
        child.ShouldHold(a + Page, 1, seed: 81);
        parent.ShouldHold(a + Page, 1, seed: 81);
        Accounting.ShouldBeConsistent(_memory, [parent, child]);
        parent.Exit();
        child.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void ASharedFilePageIsRefusedWithEopnotsuppAndNothingIsHeld()
    {
        var mm = new Mm(_memory);
        SimFile file = TestKit.PatternFile(_memory, 1, seed: 82);
        ulong a = mm.Mmap(0, Page, Protection.ReadWrite, MapFlags.Shared, file);

        Errno error;
        using (mm.MmapReadLock())
        {
            error = DeviceExclusive.Make(mm, a, _owner, out _);
        }

        error.Should().Be(Errno.EOPNOTSUPP);
        Pte pte = mm.ReadPte(a);
        pte.Kind.Should().Be(PteKind.Present);
        _memory.IsPageLocked(pte.Pfn).Should().BeFalse();
        mm.ShouldBeAccounted(a, 1, extraReferences: 1);
        mm.ShouldHoldFrom(a, 1, 0, seed: 82);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, [], files: [file]);
    }

    [Fact]
    public void InvalidAddressesFailAndChangeNothing()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(1);
        ulong readOnly = mm.MapAnonymous(1, Protection.Read);
        TestKit.Fill(mm, a, 1, seed: 83);
        MmSnapshot snapshot = MmSnapshot.Capture(mm);

        using (mm.MmapReadLock())
        {
            Action unaligned = () => DeviceExclusive.Make(mm, a + 8, _owner, out _);
            unaligned.ShouldFailWith(Errno.EINVAL);
            DeviceExclusive.Make(mm, readOnly, _owner, out _).Should().Be(Errno.EFAULT);
            DeviceExclusive.Make(mm, Mm.MinimumAddress, _owner, out _).Should().Be(Errno.EFAULT);
        }

        Action unlocked = () => DeviceExclusive.Make(mm, a, _owner, out _);
        unlocked.Should().Throw<KernelBugException>();
        snapshot.ShouldBeUnchanged();
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
    }

    [Fact]
    public void MunmapDropsAnExclusiveEntryWithItsPageAndMigrationDoesNotCollectIt()
    {
        var mm = new Mm(_memory);
        var driver = new MigrationTestDriver(_memory);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 84);
        using (mm.MmapReadLock())
        {
            DeviceExclusive.Make(mm, a, _owner, out Pfn page).Should().Be(Errno.None);
            _memory.UnlockPage(page);
            _memory.PutPage(page);
        }

        driver.MigrateToDevice(mm, a, a + (2 * Page)).Should().Be(1, "the exclusive entry is not collected");
        mm.ReadPte(a).Kind.Should().Be(PteKind.DeviceExclusive);
        mm.Munmap(a, 2 * Page);

        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        driver.FreePageCount.Should().Be(driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }
}
