using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

public class MmMappingsConcurrencyTests
{
    private const int Threads = 3;
    private const int Iterations = 1500;
    private const ulong SharedPages = 64;
    private const ulong OwnPages = 16;

    // The shared window straddles a 2 MiB boundary, so page tables come and go on both sides.
    private const ulong SharedWindow = 0x4020_0000 - (32 * Page);
    private const ulong OwnWindows = 0x5000_0000;
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(20240611)]
    public void MappingCallsAndAccessesFromSeveralThreadsKeepTheAddressSpaceConsistent(int seed)
    {
        PhysicalMemory memory = NewMemory();
        ulong initialFree = memory.FreeRamPages;
        var mm = new Mm(memory);

        TestThread<string?>[] workers = [.. Enumerable.Range(0, Threads).Select(i => new TestThread<string?>(() => Work(mm, seed, i)))];

        foreach (TestThread<string?> worker in workers)
        {
            worker.Join(s_patience).Should().BeTrue($"seed {seed}: every worker finishes");
        }

        workers.Select(w => w.Result).Where(r => r is not null).Should().BeEmpty($"seed {seed}: no worker saw an undocumented error or lost data");
        CheckConsistency(mm, memory, initialFree, seed);

        mm.Exit();

        memory.FreeRamPages.Should().Be(initialFree, $"seed {seed}: exit frees every page");
        mm.PageTable.PteTableCount.Should().Be(0, $"seed {seed}: exit frees every page table");
    }

    /// <summary>One worker: random calls on the shared window, and checked writes in its own window. Returns a failure or null.</summary>
    private static string? Work(Mm mm, int seed, int index)
    {
        var random = new Random((seed * 1000) + index);
        ulong own = OwnWindows + ((ulong)index * 0x10_0000);
        mm.MapAnonymousAt(own, OwnPages);
        var stamps = new int[OwnPages];
        bool ownReadOnly = false;
        var buffer = new byte[3 * Page];
        string step = "start";
        try
        {
            for (int i = 0; i < Iterations; i++)
            {
                ulong start = SharedWindow + ((ulong)random.Next((int)SharedPages) * Page);
                ulong pages = (ulong)random.Next(1, 9);
                pages = Math.Min(pages, ((SharedWindow + (SharedPages * Page)) - start) / Page);
                int operation = random.Next(10);
                step = $"iteration {i}, operation {operation} at 0x{start:x} for {pages} pages";
                try
                {
                    switch (operation)
                    {
                        case 0:
                            mm.Mmap(start, pages * Page, random.Next(4) == 0 ? Protection.Read : Protection.ReadWrite, PrivateAnonymous | MapFlags.Fixed);
                            break;
                        case 1:
                            mm.Munmap(start, pages * Page);
                            break;
                        case 2:
                            mm.Mprotect(start, pages * Page, random.Next(3) switch { 0 => Protection.None, 1 => Protection.Read, _ => Protection.ReadWrite });
                            break;
                        case 3:
                        case 4:
                            random.NextBytes(buffer);
                            mm.Write(start + (ulong)random.Next((int)Page), buffer.AsSpan(0, (int)Math.Min(pages, 3) * (int)Page - (int)Page + 1));
                            break;
                        case 5:
                            mm.Read(start, buffer.AsSpan(0, (int)(Math.Min(pages, 3) * Page)));
                            break;
                        case 6:
                            mm.Madvise(start, pages * Page, random.Next(2) == 0 ? Advice.DontNeed : Advice.Free);
                            break;
                        case 7:
                            ulong to = SharedWindow + ((ulong)random.Next((int)SharedPages) * Page);
                            if (to + (pages * Page) <= SharedWindow + (SharedPages * Page) && (to + (pages * Page) <= start || start + (pages * Page) <= to))
                            {
                                mm.Mremap(start, pages * Page, pages * Page, MremapFlags.MayMove | MremapFlags.Fixed, to);
                            }

                            break;
                        default:
                            OwnStep(mm, random, own, stamps, ref ownReadOnly, i);
                            break;
                    }
                }
                catch (SegmentationFaultException) when (operation is 3 or 4 or 5)
                {
                    // Another thread unmapped or protected the range: documented.
                }
                catch (HmmException error) when ((operation is 2 or 6 && error.Error == Errno.ENOMEM) || (operation == 7 && error.Error == Errno.EFAULT))
                {
                    // Part of the range was not mapped, or not within one area: documented.
                }
            }

            step = "final check of the own window";
            if (ownReadOnly)
            {
                mm.Mprotect(own, OwnPages * Page, Protection.ReadWrite);
            }

            for (ulong page = 0; page < OwnPages; page++)
            {
                CheckOwnPage(mm, own, page, stamps[page]);
            }

            return null;
        }
        catch (Exception error)
        {
            return $"seed {seed}, thread {index}, {step}: {error}";
        }
    }

    /// <summary>A step in the thread's own window: write a page and read it back, or flip its protection and check it holds.</summary>
    private static void OwnStep(Mm mm, Random random, ulong own, int[] stamps, ref bool readOnly, int iteration)
    {
        ulong page = (ulong)random.Next((int)OwnPages);
        if (random.Next(8) == 0)
        {
            readOnly = !readOnly;
            mm.Mprotect(own, OwnPages * Page, readOnly ? Protection.Read : Protection.ReadWrite);
            return;
        }

        if (readOnly)
        {
            try
            {
                mm.Write(own + (page * Page), [1]);
                throw new InvalidOperationException("A write to a read-only page succeeded.");
            }
            catch (SegmentationFaultException fault) when (fault.IsWrite && !fault.IsBusError)
            {
            }
        }
        else
        {
            stamps[page] = iteration + 1;
            mm.Write(own + (page * Page), Pattern(own + (page * Page), (int)Page, seed: stamps[page]));
        }

        CheckOwnPage(mm, own, page, stamps[page]);
    }

    private static void CheckOwnPage(Mm mm, ulong own, ulong page, int stamp)
    {
        ulong address = own + (page * Page);
        byte[] bytes = ReadBytes(mm, address, Page);
        byte[] expected = stamp == 0 ? new byte[Page] : Pattern(address, (int)Page, seed: stamp);
        if (!bytes.AsSpan().SequenceEqual(expected))
        {
            throw new InvalidOperationException($"Own page 0x{address:x} lost its data (stamp {stamp}).");
        }
    }

    /// <summary>Areas ordered and disjoint; entries only inside areas; each mapped page mapped once, found by rmap, and no page leaked.</summary>
    private static void CheckConsistency(Mm mm, PhysicalMemory memory, ulong initialFree, int seed)
    {
        IReadOnlyList<Vma> areas = mm.Areas();
        for (int i = 0; i < areas.Count; i++)
        {
            Vma vma = areas[i];
            (vma.Start < vma.End && PageSize.IsAligned(vma.Start) && PageSize.IsAligned(vma.End)).Should().BeTrue($"seed {seed}: {vma} is a proper area");
            if (i > 0)
            {
                areas[i - 1].End.Should().BeLessThanOrEqualTo(vma.Start, $"seed {seed}: areas are ordered and disjoint");
            }
        }

        ulong mappedPages = 0;
        var windows = new List<(ulong Start, ulong End)> { (SharedWindow, SharedWindow + (SharedPages * Page)) };
        windows.AddRange(Enumerable.Range(0, Threads).Select(i => (OwnWindows + ((ulong)i * 0x10_0000), OwnWindows + ((ulong)i * 0x10_0000) + (OwnPages * Page))));
        foreach ((ulong start, ulong end) in windows)
        {
            for (ulong address = start; address < end; address += Page)
            {
                Pte pte = mm.ReadPte(address);
                Vma? vma = areas.FirstOrDefault(v => v.Contains(address));
                if (vma is null)
                {
                    pte.IsNone.Should().BeTrue($"seed {seed}: no entry at 0x{address:x} outside every area");
                    continue;
                }

                if (pte.IsNone || pte.Pfn == PhysicalMemory.ZeroPage)
                {
                    continue;
                }

                mappedPages++;
                ref readonly PageFrame frame = ref memory.Page(pte.Pfn);
                (frame.MapCount, frame.RefCount).Should().Be((1, 1), $"seed {seed}: the page at 0x{address:x} is mapped once");
                frame.Index.Should().Be(vma.PageIndex(address), $"seed {seed}: the page at 0x{address:x} has its area's index");
                Rmap.FindMappings(memory, pte.Pfn).Should().ContainSingle($"seed {seed}: rmap finds the page at 0x{address:x}").Which.Address.Should().Be(address);
                (!pte.IsWritable || (vma.Flags & VmFlags.Write) != 0).Should().BeTrue($"seed {seed}: a writable entry at 0x{address:x} is in a writable area");
            }
        }

        memory.FreeRamPages.Should().Be(initialFree - mappedPages, $"seed {seed}: every allocated page is mapped");
    }
}
