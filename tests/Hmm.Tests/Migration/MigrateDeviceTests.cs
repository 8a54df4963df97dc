using FluentAssertions;
using Hmm.Tests.AddressSpace;
using Xunit;

namespace Hmm.Tests.Migration;

public class MigrateDeviceTests
{
    private const ulong Page = MigrationTestKit.Page;

    private readonly PhysicalMemory _memory = MigrationTestKit.NewMemory();
    private readonly ulong _freeRamAtStart;
    private readonly MigrationTestDriver _driver;

    public MigrateDeviceTests()
    {
        _freeRamAtStart = _memory.FreeRamPages;
        _driver = new MigrationTestDriver(_memory);
    }

    [Fact]
    public void AFaultInTheParentMovesThePageForTheForkedChildToo()
    {
        var parent = new Mm(_memory, "parent");
        ulong a = parent.MapAnonymous(2);
        TestKit.Fill(parent, a, 2, seed: 30);
        _driver.MigrateToDevice(parent, a, a + (2 * Page)).Should().Be(2);
        Mm child = parent.Fork();
        Pfn shared = parent.ReadPte(a).Pfn;
        _memory.Page(shared).MapCount.Should().Be(2);

        parent.Write(a, [0x77]);

        _driver.MigrateToRamCalls.Should().Be(1);
        child.ReadPte(a).Kind.Should().Be(PteKind.Present, "the child's mapping was found through the reverse map and moved as well");
        child.ShouldHold(a, 2, seed: 30);
        TestKit.ReadBytes(parent, a, 1).Should().Equal(0x77);
        parent.ShouldBeAccounted(a, 2);
        child.ShouldBeAccounted(a, 2);
        Accounting.ShouldBeConsistent(_memory, [parent, child]);
        parent.Exit();
        child.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void EvictionByPfnMovesEveryMappingBackIncludingForkedChildren()
    {
        var parent = new Mm(_memory, "parent");
        ulong a = parent.MapAnonymous(4);
        TestKit.Fill(parent, a, 4, seed: 31);
        _driver.MigrateToDevice(parent, a, a + (4 * Page)).Should().Be(4);
        Mm child = parent.Fork();
        var other = new Mm(_memory, "other");
        ulong b = other.MapAnonymous(1);
        TestKit.Fill(other, b, 1, seed: 32);
        _driver.MigrateToDevice(other, b, b + Page).Should().Be(1);

        _driver.EvictAll().Should().Be(5);

        foreach ((Mm mm, ulong start, ulong pages) in new[] { (parent, a, 4UL), (child, a, 4UL), (other, b, 1UL) })
        {
            for (ulong i = 0; i < pages; i++)
            {
                Pte pte = mm.ReadPte(start + (i * Page));
                pte.Kind.Should().Be(PteKind.Present, $"{mm.Name} page {i} is back in RAM");
                _memory.Page(pte.Pfn).IsZoneDevice.Should().BeFalse();
            }

            mm.ShouldBeAccounted(start, pages);
        }

        parent.ReadPte(a).Pfn.Should().Be(child.ReadPte(a).Pfn, "parent and child still share the page copy-on-write");
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages, "every device page is free");
        _driver.MigrateToRamCalls.Should().Be(0, "nothing faulted");
        child.Write(a + (2 * Page), [0x55]);
        parent.ShouldHold(a, 4, seed: 31);
        TestKit.ReadBytes(child, a + (2 * Page), 1).Should().Equal(0x55);
        other.ShouldHold(b, 1, seed: 32);
        Accounting.ShouldBeConsistent(_memory, [parent, child, other]);
        parent.Exit();
        child.Exit();
        other.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void EvictionSkipsAReferencedDevicePageAndKeepsItIntact()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 33);
        _driver.MigrateToDevice(mm, a, a + (2 * Page));
        Pfn held = mm.ReadPte(a).Pfn;
        _memory.GetPage(held);

        _driver.EvictAll().Should().Be(1);

        mm.IsOnDevice(a, _driver).Should().BeTrue("a page with a reference beyond its mapping is not moved");
        mm.ReadPte(a + Page).Kind.Should().Be(PteKind.Present);
        _memory.PutPage(held);
        mm.ShouldBeAccounted(a, 2);
        mm.ShouldHold(a, 2, seed: 33);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void UnbindingTheDeviceEvictsItsDataFirstAndLosesNothing()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(6);
        TestKit.Fill(mm, a, 6, seed: 34);
        _driver.MigrateToDevice(mm, a, a + (6 * Page)).Should().Be(6);

        _driver.Device.Unbind(TimeSpan.FromSeconds(30));

        _driver.Pagemap.State.Should().Be(DevPagemapState.Removed);
        for (ulong i = 0; i < 6; i++)
        {
            mm.ReadPte(a + (i * Page)).Kind.Should().Be(PteKind.Present);
        }

        mm.ShouldHold(a, 6, seed: 34);
        mm.ShouldBeAccounted(a, 6);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void AReferencedDevicePageIsReportedByTheUnbindTimeoutAndItsDataSurvives()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 35);
        _driver.MigrateToDevice(mm, a, a + (2 * Page));
        Pfn held = mm.ReadPte(a).Pfn;
        _memory.GetPage(held);

        Action unbind = () => _driver.Device.Unbind(TimeSpan.FromMilliseconds(200));

        unbind.Should().Throw<DeviceTeardownTimeoutException>().Which.ReferencedPages.Should().Contain(p => p.Pfn == held);
        mm.IsOnDevice(a, _driver).Should().BeTrue("the eviction skipped the referenced page");
        _memory.PageData(held).ToArray().Should().Equal(TestKit.Pattern(a, (int)Page, seed: 35), "its data is intact on the device");

        // Once the holder lets go, the CPU can fault it back (a page with a foreign reference cannot migrate).
        _memory.PutPage(held);
        mm.ShouldHold(a, 2, seed: 35);
        _driver.Device.Unbind(TimeSpan.FromSeconds(30));
        _driver.Pagemap.State.Should().Be(DevPagemapState.Removed, "the last reference went when the CPU faulted the page back");
        mm.ShouldBeAccounted(a, 2);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void DevicePfnsEvictsAnUnorderedListOfPages()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(3);
        TestKit.Fill(mm, a, 3, seed: 36);
        _driver.MigrateToDevice(mm, a, a + (3 * Page));
        ulong[] pfns = [mm.ReadPte(a + (2 * Page)).Pfn.Value, mm.ReadPte(a).Pfn.Value];
        var dst = new ulong[2];

        Migrate.DevicePfns(_memory, pfns);
        pfns.Should().OnlyContain(e => MigratePfn.IsMigrating(e));
        mm.ReadPte(a).Kind.Should().Be(PteKind.Migration);
        for (int i = 0; i < 2; i++)
        {
            MigratePfn.TryGetPage(pfns[i], out Pfn device).Should().BeTrue();
            Pfn ram = _memory.AllocatePage();
            _memory.LockPage(ram);
            _memory.PageData(device).CopyTo(_memory.PageData(ram));
            dst[i] = MigratePfn.FromPfn(ram);
        }

        Migrate.DevicePages(_memory, pfns, dst);
        Migrate.DeviceFinalize(_memory, pfns, dst);

        mm.ReadPte(a).Kind.Should().Be(PteKind.Present);
        mm.IsOnDevice(a + Page, _driver).Should().BeTrue();
        mm.ReadPte(a + (2 * Page)).Kind.Should().Be(PteKind.Present);
        mm.ShouldBeAccounted(a, 3);
        mm.ShouldHold(a, 3, seed: 36);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }
}
