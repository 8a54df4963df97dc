using FluentAssertions;
using Hmm.Tests.AddressSpace;
using Xunit;

namespace Hmm.Tests.Migration;

public class MigrateArgumentTests
{
    private const ulong Page = MigrationTestKit.Page;
    private const ulong Sentinel = 0xDEAD_BEEF;

    private readonly PhysicalMemory _memory = MigrationTestKit.NewMemory();
    private readonly MigrationTestDriver _driver;
    private readonly Mm _mm;
    private readonly ulong _a;

    public MigrateArgumentTests()
    {
        _driver = new MigrationTestDriver(_memory);
        _mm = new Mm(_memory);
        _a = _mm.MapAnonymous(4);
        TestKit.Fill(_mm, _a, 4, seed: 20);
    }

    public static TheoryData<string> InvalidSetups() =>
    [
        "no area", "unaligned start", "unaligned end", "empty range", "start below the area", "end beyond the area",
        "short src", "short dst", "fault page in RAM", "unlocked fault page", "detached area",
    ];

    [Theory]
    [MemberData(nameof(InvalidSetups))]
    public void InvalidSetupFailsWithEinvalAndChangesNothing(string what)
    {
        Pfn device = default;
        Vma? detached = null;
        if (what == "unlocked fault page")
        {
            _driver.TryAllocateDevicePage(out device).Should().BeTrue();
            _memory.UnlockPage(device);
        }
        else if (what == "detached area")
        {
            ulong b = _mm.MapAnonymous(1);
            using (_mm.MmapReadLock())
            {
                detached = _mm.FindVma(b);
            }

            _mm.Munmap(b, Page);
        }

        MmSnapshot snapshot = MmSnapshot.Capture(_mm, (_a, _a + (4 * Page)));
        int devicePages = _driver.FreePageCount;
        var src = new ulong[4];
        var dst = new ulong[4];
        Array.Fill(src, Sentinel);
        Array.Fill(dst, Sentinel);

        Action setup = () =>
        {
            using MmapLockGuard guard = _mm.MmapReadLock();
            var args = new MigrateVma { Vma = _mm.FindVma(_a), Start = _a, End = _a + (4 * Page), Src = src, Dst = dst, PgmapOwner = _driver.Owner, Flags = MigrateVmaSelect.System };
            switch (what)
            {
                case "no area": args.Vma = null; break;
                case "unaligned start": args.Start += 8; break;
                case "unaligned end": args.End -= 8; break;
                case "empty range": args.End = args.Start; break;
                case "start below the area": args.Start -= Page; break;
                case "end beyond the area": args.End += Page; break;
                case "short src": args.Src = src.AsSpan(0, 3); break;
                case "short dst": args.Dst = dst.AsSpan(0, 3); break;
                case "fault page in RAM": args.FaultPage = _mm.ReadPte(_a).Pfn; break;
                case "unlocked fault page": args.FaultPage = device; break;
                case "detached area": args.Vma = detached; args.Start = detached!.Start; args.End = detached.End; break;
                default: throw new ArgumentOutOfRangeException(nameof(what), what, null);
            }

            Migrate.VmaSetup(ref args);
        };

        setup.ShouldFailWith(Errno.EINVAL);
        src.Should().OnlyContain(e => e == Sentinel, "the arrays are untouched");
        dst.Should().OnlyContain(e => e == Sentinel);
        snapshot.ShouldBeUnchanged();
        _mm.ShouldBeAccounted(_a, 4);
        _driver.FreePageCount.Should().Be(devicePages);
    }

    [Fact]
    public void SetupWithoutTheMmapLockIsAKernelBugAndChangesNothing()
    {
        MmSnapshot snapshot = MmSnapshot.Capture(_mm, (_a, _a + (4 * Page)));
        var src = new ulong[4];
        var dst = new ulong[4];
        Vma vma;
        using (_mm.MmapReadLock())
        {
            vma = _mm.FindVma(_a)!;
        }

        Action setup = () =>
        {
            var args = new MigrateVma { Vma = vma, Start = _a, End = _a + (4 * Page), Src = src, Dst = dst, Flags = MigrateVmaSelect.System };
            Migrate.VmaSetup(ref args);
        };

        setup.Should().Throw<KernelBugException>();
        snapshot.ShouldBeUnchanged();
    }

    [Fact]
    public void PagesOrFinalizeOfADescriptorNeverSetUpFailWithEinval()
    {
        var src = new ulong[4];
        var dst = new ulong[4];
        Action pages = () =>
        {
            using MmapLockGuard guard = _mm.MmapReadLock();
            var args = new MigrateVma { Vma = _mm.FindVma(_a), Start = _a, End = _a + (4 * Page), Src = src, Dst = dst };
            Migrate.VmaPages(ref args);
        };
        Action finalize = () =>
        {
            using MmapLockGuard guard = _mm.MmapReadLock();
            var args = new MigrateVma { Vma = _mm.FindVma(_a), Start = _a, End = _a + (4 * Page), Src = src, Dst = dst };
            Migrate.VmaFinalize(ref args);
        };

        pages.ShouldFailWith(Errno.EINVAL);
        finalize.ShouldFailWith(Errno.EINVAL);
        _mm.ShouldBeAccounted(_a, 4);
    }

    [Fact]
    public void AnUnlockedDestinationIsAKernelBugThatChangesNothingAndTheMigrationCanStillFinish()
    {
        var src = new ulong[4];
        var dst = new ulong[4];
        using (_mm.MmapReadLock())
        {
            var args = new MigrateVma { Vma = _mm.FindVma(_a), Start = _a, End = _a + (4 * Page), Src = src, Dst = dst, PgmapOwner = _driver.Owner, Flags = MigrateVmaSelect.System };
            Migrate.VmaSetup(ref args);
            args.CPages.Should().Be(4);
            for (int i = 0; i < 4; i++)
            {
                _driver.TryAllocateDevicePage(out Pfn device).Should().BeTrue();
                MigratePfn.TryGetPage(src[i], out Pfn source).Should().BeTrue();
                _memory.PageData(source).CopyTo(_memory.PageData(device));
                dst[i] = MigratePfn.FromPfn(device);
            }

            MigratePfn.TryGetPage(dst[3], out Pfn unlocked).Should().BeTrue();
            _memory.UnlockPage(unlocked);
            ulong[] srcBefore = [.. src];

            KernelBugException? bug = null;
            try
            {
                Migrate.VmaPages(ref args);
            }
            catch (KernelBugException error)
            {
                bug = error;
            }

            bug.Should().NotBeNull("a destination must be locked");
            src.Should().Equal(srcBefore, "pages changed nothing");
            for (int i = 0; i < 3; i++)
            {
                MigratePfn.TryGetPage(dst[i], out Pfn device).Should().BeTrue();
                _memory.Page(device).Mapping.Should().Be(0, "no metadata moved");
            }

            _memory.LockPage(unlocked);
            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
        }

        _mm.ShouldHold(_a, 4, seed: 20);
        _mm.ShouldBeAccounted(_a, 4);
        _mm.Exit();
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
    }

    [Fact]
    public void DeviceRangeOfPfnsWithoutStructPagesFailsWithEinvalAndLocksNothing()
    {
        var src = new ulong[4];
        Array.Fill(src, Sentinel);
        _driver.MigrateToDevice(_mm, _a, _a + (4 * Page)).Should().Be(4);
        Pfn last = _driver.Pagemap.Ranges[0].StartPfn + (_driver.Pagemap.PageCount - 2);

        Action beyond = () => Migrate.DeviceRange(_memory, src, last);
        Action empty = () => Migrate.DeviceRange(_memory, [], _driver.Pagemap.Ranges[0].StartPfn);

        beyond.ShouldFailWith(Errno.EINVAL);
        empty.ShouldFailWith(Errno.EINVAL);
        src.Should().OnlyContain(e => e == Sentinel);
        for (ulong i = 0; i < 4; i++)
        {
            _mm.IsOnDevice(_a + (i * Page), _driver).Should().BeTrue("nothing was unmapped");
            _memory.IsPageLocked(_mm.ReadPte(_a + (i * Page)).Pfn).Should().BeFalse();
        }

        _mm.ShouldBeAccounted(_a, 4);
        _mm.ShouldHold(_a, 4, seed: 20);
    }
}
