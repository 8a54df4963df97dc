using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Migration;

/// <summary>The whole-memory account checker itself: it accepts every kind of reference the rules allow and reports each one it cannot account for.</summary>
public class AccountingTests
{
    private const ulong Page = MigrationTestKit.Page;
    private readonly PhysicalMemory _memory = MigrationTestKit.NewMemory();

    [Fact]
    public void PresentDevicePrivateExclusiveCachedAndPinnedPagesAreAllAccountedFor()
    {
        var driver = new MigrationTestDriver(_memory);
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(4);
        TestKit.Fill(mm, a, 4, seed: 1);
        ulong zero = mm.MapAnonymous(1);
        TestKit.ReadBytes(mm, zero, 1);
        mm.ReadPte(zero).Pfn.Should().Be(PhysicalMemory.ZeroPage, "an untouched read maps the zero page, which is not counted");
        SimFile file = TestKit.PatternFile(_memory, 2, seed: 2);
        ulong mapped = mm.Mmap(0, 2 * Page, Protection.Read, MapFlags.Shared, file);
        TestKit.ReadBytes(mm, mapped, 2 * Page);
        driver.MigrateToDevice(mm, a, a + Page).Should().Be(1);
        using (mm.MmapReadLock())
        {
            DeviceExclusive.Make(mm, a + Page, driver.Owner, out Pfn exclusive).Should().Be(Errno.None);
            _memory.UnlockPage(exclusive);
            _memory.PutPage(exclusive);
        }

        Pfn[] pinned = new Pfn[1];
        mm.PinUserPages(a + (2 * Page), GupFlags.Write, pinned).Should().Be(1);
        Mm child = mm.Fork();

        Accounting.ShouldBeConsistent(_memory, [mm, child], pfn => pfn == pinned[0] ? Mm.PinCountingBias : 0);

        mm.UnpinUserPages(pinned);
        child.Exit();
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, [], files: [file]);
        Accounting.Collect(_memory, [], null, null, null, out _).Should().HaveCount(2, "an unmapped file's cache is found only when the file is given");
    }

    [Fact]
    public void AnUnaccountedReferenceAMissingMappingAndAFreedDevicePageStillReferencedAreEachReported()
    {
        var driver = new MigrationTestDriver(_memory);
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 3);
        Pfn ram = mm.ReadPte(a).Pfn;
        driver.MigrateToDevice(mm, a + Page, a + (2 * Page)).Should().Be(1);
        Pfn device = mm.ReadPte(a + Page).Pfn;
        _memory.GetPage(ram);

        List<string> errors = Accounting.Collect(_memory, [mm], null, null, null, out int frames);

        errors.Should().Equal($"{ram}: expected refcount 1 mapcount 1, actual refcount 2 mapcount 1");
        frames.Should().Be((int)(_memory.RamPages + (ulong)driver.InitialFreePages));
        Accounting.Collect(_memory, [], null, null, null, out _).Should().BeEquivalentTo(
            [$"{ram}: expected refcount 0 mapcount 0, actual refcount 2 mapcount 1", $"{device}: expected refcount 0 mapcount 0, actual refcount 1 mapcount 1"],
            "without the process nothing accounts for its pages");
        FluentActions.Invoking(() => Accounting.ShouldBeConsistent(_memory, [mm], because: "seed 3"))
            .Should().Throw<Exception>().WithMessage($"*seed 3: 1 of * frames are not accounted for*{ram}: expected refcount 1 mapcount 1, actual refcount 2 mapcount 1*");

        _memory.PutPage(ram);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
    }
}
