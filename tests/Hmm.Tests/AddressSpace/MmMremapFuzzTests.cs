using FluentAssertions;
using Xunit;
using Xunit.Sdk;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

/// <summary>mremap validates everything before it unmaps anything: every call either succeeds or fails with nothing changed.</summary>
public class MmMremapFuzzTests
{
    private const ulong Base = 0x4000_0000;
    private const int Steps = 250;

    [Fact]
    public void DuplicatingSharedMemoryOntoItsOwnSourceIsEfaultAndChangesNothing()
    {
        PhysicalMemory memory = NewMemory();
        var mm = new Mm(memory);
        ulong a = mm.Mmap(Base, 4 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(mm, a, 4, seed: 3);
        MmSnapshot before = MmSnapshot.Capture(mm);

        ((Action)(() => mm.Mremap(a, 0, 2 * Page, MremapFlags.MayMove | MremapFlags.Fixed, a))).ShouldFailWith(Errno.EFAULT);
        // From the second page the kernel's overlap check sees it (old start + 0 lies inside the new range): EINVAL.
        ((Action)(() => mm.Mremap(a + Page, 0, 2 * Page, MremapFlags.MayMove | MremapFlags.Fixed, a))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
        mm.ShouldHold(a, 4, seed: 3);
    }

    [Fact]
    public void DuplicatingSharedMemoryNextToItsSourceWorks()
    {
        PhysicalMemory memory = NewMemory();
        var mm = new Mm(memory);
        ulong a = mm.Mmap(Base, 4 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(mm, a, 4, seed: 3);

        // The target covers the source area's last two pages but not the duplicated page.
        mm.Mremap(a, 0, 2 * Page, MremapFlags.MayMove | MremapFlags.Fixed, a + (2 * Page)).Should().Be(a + (2 * Page));

        mm.ShouldHold(a, 2, seed: 3);
        mm.ShouldHoldFrom(a + (2 * Page), 2, a, seed: 3);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void RandomMremapCallsSucceedOrChangeNothing(int seed)
    {
        var random = new Random(seed);
        PhysicalMemory memory = NewMemory(ramMiB: 32);
        Mm mm = Populate(memory);
        for (int step = 0; step < Steps; step++)
        {
            if (mm.VmaCount > 24 || mm.VmaCount == 0)
            {
                mm.Exit();
                mm = Populate(memory);
            }

            IReadOnlyList<Vma> areas = mm.Areas();
            Vma area = areas[random.Next(areas.Count)];
            ulong oldAddress = PickAddress(random, area, areas);
            ulong oldSize = PickSize(random);
            ulong newSize = PickSize(random);
            var flags = (MremapFlags)random.Next(8);
            if (random.Next(20) == 0)
            {
                flags |= (MremapFlags)8;
            }

            ulong newAddress = random.Next(3) == 0 ? oldAddress + (((ulong)random.Next(-3, 4) * Page) & ulong.MaxValue) : PickAddress(random, areas[random.Next(areas.Count)], areas);
            string call = $"seed {seed}, step {step}: mremap(0x{oldAddress:x}, 0x{oldSize:x}, 0x{newSize:x}, {flags}, 0x{newAddress:x}) on {string.Join("; ", areas)}";

            MmSnapshot before = MmSnapshot.Capture(mm, (oldAddress & PageSize.Mask, (oldAddress & PageSize.Mask) + Page));
            try
            {
                mm.Mremap(oldAddress, oldSize, newSize, flags, newAddress);
            }
            catch (HmmException)
            {
                try
                {
                    before.ShouldBeUnchanged();
                }
                catch (Exception failure)
                {
                    throw new XunitException($"{call} failed and changed state: {failure.Message}");
                }
            }
            catch (Exception unexpected)
            {
                throw new XunitException($"{call} threw {unexpected}");
            }
        }

        mm.Exit();
    }

    private static Mm Populate(PhysicalMemory memory)
    {
        var mm = new Mm(memory);
        ulong a = mm.MapAnonymousAt(Base, 6);
        Fill(mm, a, 6, seed: 1);
        ulong b = mm.Mmap(Base + (8 * Page), 6 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(mm, b, 6, seed: 2);
        SimFile file = PatternFile(memory, 8, seed: 3);
        mm.Mmap(Base + (16 * Page), 6 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.FixedNoReplace, file, Page);
        ulong d = mm.Mmap(Base + (24 * Page), 4 * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.FixedNoReplace, file);
        Fill(mm, d, 2, seed: 4);

        // A driver's area: two inserted pages and a hole (the inserted pages keep the driver's reference, so they
        // outlive the address space; they are few per run).
        ulong e = mm.MmapSpecial(Base + (32 * Page), 3 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.FixedNoReplace, VmFlags.MixedMap);
        using (mm.MmapWriteLock())
        {
            Vma driver = mm.FindVma(e)!;
            for (ulong i = 0; i < 2; i++)
            {
                Pfn page = memory.AllocatePage();
                memory.PageData(page).Fill((byte)(0xd0 + i));
                mm.InsertPage(driver, e + (i * Page), page).Should().Be(Errno.None);
            }
        }

        return mm;
    }

    private static ulong PickAddress(Random random, Vma area, IReadOnlyList<Vma> areas) => random.Next(12) switch
    {
        0 => area.Start + 1,
        1 => area.End,
        2 => area.Start - Page,
        3 => 0,
        4 => Mm.TaskSize - Page,
        5 => Mm.MinimumAddress - Page,
        6 => areas[^1].End + (Page * (ulong)random.Next(64)),
        _ => area.Start + (Page * (ulong)random.Next((int)((area.End - area.Start) / Page))),
    };

    private static ulong PickSize(Random random) => random.Next(14) switch
    {
        0 => 0,
        1 => ulong.MaxValue,
        2 => Mm.TaskSize + Page,
        3 => Mm.TaskSize,
        4 => 1,
        _ => Page * (ulong)random.Next(1, 9),
    };
}
