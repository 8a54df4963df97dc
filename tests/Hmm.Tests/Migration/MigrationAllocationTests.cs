using FluentAssertions;
using Hmm.Tests.AddressSpace;
using Xunit;

namespace Hmm.Tests.Migration;

public class MigrationAllocationTests
{
    private const ulong Page = MigrationTestKit.Page;
    private const int Pages = 64;

    [Fact]
    public void AWarmMigrateVmaRoundTripAndACpuFaultBackAllocateNothing()
    {
        PhysicalMemory memory = MigrationTestKit.NewMemory();
        var driver = new MigrationTestDriver(memory);
        var mm = new Mm(memory);
        ulong a = mm.MapAnonymous(Pages + 1);
        TestKit.Fill(mm, a, Pages + 1, seed: 50);
        var src = new ulong[Pages];
        var dst = new ulong[Pages];
        var oneByte = new byte[1];

        void Round()
        {
            using (mm.MmapReadLock())
            {
                Move(mm, driver, a, Pages, src, dst, toDevice: true);
                Move(mm, driver, a, Pages, src, dst, toDevice: false);
                Move(mm, driver, a + (Pages * Page), 1, src, dst, toDevice: true);
            }

            mm.Read(a + (Pages * Page), oneByte);
        }

        Round();
        long allocated = AllocationProbe.FewestBytesAllocated(Round);

        allocated.Should().Be(0, "a migrate_vma round trip and a migrate_to_ram on a warm device allocate nothing");
        mm.ShouldHold(a, Pages + 1, seed: 50);
        mm.ShouldBeAccounted(a, Pages + 1);
        driver.FreePageCount.Should().Be(driver.InitialFreePages);
    }

    [Fact]
    public void AWarmEvictionByPfnAllocatesNothing()
    {
        PhysicalMemory memory = MigrationTestKit.NewMemory();
        var driver = new MigrationTestDriver(memory);
        var mm = new Mm(memory);
        ulong a = mm.MapAnonymous(Pages);
        TestKit.Fill(mm, a, Pages, seed: 51);
        Mm child = mm.Fork();
        var src = new ulong[Pages];
        var dst = new ulong[Pages];
        var evict = new ulong[(int)driver.Pagemap.PageCount];
        var back = new ulong[evict.Length];

        void Round()
        {
            using (mm.MmapReadLock())
            {
                Move(mm, driver, a, Pages, src, dst, toDevice: true);
            }

            Array.Clear(back);
            Migrate.DeviceRange(memory, evict, driver.Pagemap.Ranges[0].StartPfn);
            for (int i = 0; i < evict.Length; i++)
            {
                if (MigratePfn.TryGetPage(evict[i], out Pfn device) && MigratePfn.IsMigrating(evict[i]))
                {
                    Pfn ram = memory.AllocatePage();
                    memory.LockPage(ram);
                    memory.PageData(device).CopyTo(memory.PageData(ram));
                    back[i] = MigratePfn.FromPfn(ram);
                }
            }

            Migrate.DevicePages(memory, evict, back);
            Migrate.DeviceFinalize(memory, evict, back);
        }

        Round();
        long allocated = AllocationProbe.FewestBytesAllocated(Round);

        allocated.Should().Be(0, "migrate_device_range and its pages and finalize steps allocate nothing on a warm device");
        mm.ShouldHold(a, Pages, seed: 51);
        child.ShouldHold(a, Pages, seed: 51);
        mm.ShouldBeAccounted(a, Pages);
        driver.FreePageCount.Should().Be(driver.InitialFreePages);
    }

    private static void Move(Mm mm, MigrationTestDriver driver, ulong start, int pages, ulong[] src, ulong[] dst, bool toDevice)
    {
        var args = new MigrateVma
        {
            Vma = mm.FindVma(start),
            Start = start,
            End = start + ((ulong)pages * Page),
            Src = src.AsSpan(0, pages),
            Dst = dst.AsSpan(0, pages),
            PgmapOwner = driver.Owner,
            Flags = toDevice ? MigrateVmaSelect.System : MigrateVmaSelect.DevicePrivate,
        };
        Migrate.VmaSetup(ref args);
        for (int i = 0; i < pages; i++)
        {
            if (!MigratePfn.TryGetPage(src[i], out Pfn source) || !MigratePfn.IsMigrating(src[i]))
            {
                continue;
            }

            Pfn page;
            if (toDevice)
            {
                if (!driver.TryAllocateDevicePage(out page))
                {
                    throw new InvalidOperationException("The device ran out of pages.");
                }
            }
            else
            {
                page = mm.Memory.AllocatePage();
                mm.Memory.LockPage(page);
            }

            mm.Memory.PageData(source).CopyTo(mm.Memory.PageData(page));
            dst[i] = MigratePfn.FromPfn(page);
        }

        Migrate.VmaPages(ref args);
        Migrate.VmaFinalize(ref args);
    }
}
