using System.Text;
using FluentAssertions;

namespace Hmm.Tests;

/// <summary>
/// The whole-memory account of the migration issue: every frame's refcount and mapcount must equal what the live
/// address spaces' page tables, the files' page caches and the caller's extra references (pins, driver references)
/// account for, following the reference rules of docs/architecture.md. Run it only where the machine is quiescent.
/// </summary>
internal static class Accounting
{
    private const int Reported = 16;

    /// <summary>
    /// Walks every page table of <paramref name="liveMms"/> and counts per frame: a present entry one reference and one
    /// mapcount (none for the zero page and for special entries), a device-private or device-exclusive entry one of
    /// each, a migration entry none (and none may be left at all); each cached page of a file (the files mapped by the
    /// live areas and <paramref name="files"/>) one reference; and <paramref name="extraReferences"/> more (a pin is
    /// <see cref="Mm.PinCountingBias"/>, a driver's held page one). Then every RAM frame in <c>[2, RamPages + 2)</c>
    /// and every present frame of <paramref name="pagemaps"/> must have exactly that refcount and mapcount, and be
    /// unlocked (<paramref name="pagemaps"/> defaults to every registered device-private and coherent pagemap). Free frames (the allocator's, a driver's free list) account for zero.
    /// </summary>
    /// <param name="because">Prefixed to the failure message (put the seed here).</param>
    public static void ShouldBeConsistent(
        PhysicalMemory memory,
        IEnumerable<Mm> liveMms,
        Func<Pfn, int>? extraReferences = null,
        IEnumerable<DevPagemap>? pagemaps = null,
        IEnumerable<SimFile>? files = null,
        string because = "")
    {
        List<string> errors = Collect(memory, liveMms, extraReferences, pagemaps, files, out int checkedFrames);
        if (errors.Count == 0)
        {
            return;
        }

        var message = new StringBuilder($"{because}: {errors.Count} of {checkedFrames} frames are not accounted for");
        foreach (string error in errors.Take(Reported))
        {
            message.Append("\n  ").Append(error);
        }

        errors.Should().BeEmpty(message.ToString());
    }

    /// <summary>The mismatches <see cref="ShouldBeConsistent"/> reports, all of them.</summary>
    public static List<string> Collect(
        PhysicalMemory memory,
        IEnumerable<Mm> liveMms,
        Func<Pfn, int>? extraReferences,
        IEnumerable<DevPagemap>? pagemaps,
        IEnumerable<SimFile>? files,
        out int checkedFrames)
    {
        var errors = new List<string>();
        var expected = new Dictionary<ulong, (int Refs, int Maps)>();
        var cachedFiles = new HashSet<SimFile>(files ?? []);

        void Count(Pfn pfn, int refs, int maps)
        {
            expected.TryGetValue(pfn.Value, out (int Refs, int Maps) counts);
            expected[pfn.Value] = (counts.Refs + refs, counts.Maps + maps);
        }

        foreach (Mm mm in liveMms)
        {
            mm.Memory.Should().BeSameAs(memory, $"{mm.Name} belongs to the machine being checked");
            foreach (Vma vma in mm.Areas())
            {
                if (vma.File is { } file)
                {
                    cachedFiles.Add(file);
                }
            }

            using MmapLockGuard guard = mm.MmapReadLock();

            WalkPageTables(mm, (address, pte) =>
            {
                switch (pte.Kind)
                {
                    case PteKind.Migration:
                        errors.Add($"{mm.Name} 0x{address:x}: a migration entry for {pte.Pfn} is left behind");
                        break;
                    case PteKind.Present when pte.IsSpecial || pte.Pfn == PhysicalMemory.ZeroPage:
                        break;
                    case PteKind.Present or PteKind.DevicePrivate or PteKind.DeviceExclusive:
                        Count(pte.Pfn, 1, 1);
                        break;
                }

                if (mm.FindVma(address) is null)
                {
                    errors.Add($"{mm.Name} 0x{address:x}: {pte} outside every area");
                }
            });
        }

        foreach (SimFile file in cachedFiles)
        {
            foreach (Pfn pfn in file.CachedFrames())
            {
                Count(pfn, 1, 0);
            }
        }

        int frames = 0;
        void Check(Pfn pfn)
        {
            frames++;
            expected.Remove(pfn.Value, out (int Refs, int Maps) counts);
            int refs = counts.Refs + (extraReferences?.Invoke(pfn) ?? 0);
            ref readonly PageFrame frame = ref memory.Page(pfn);
            if (frame.RefCount != refs || frame.MapCount != counts.Maps)
            {
                errors.Add($"{pfn}: expected refcount {refs} mapcount {counts.Maps}, actual refcount {frame.RefCount} mapcount {frame.MapCount}");
            }
            else if (frame.IsLocked)
            {
                errors.Add($"{pfn}: locked on a quiescent machine");
            }
        }

        for (ulong pfn = 2; pfn < memory.RamPages + 2; pfn++)
        {
            Check(new Pfn(pfn));
        }

        foreach (DevPagemap pagemap in pagemaps ?? RegisteredDevicePagemaps(memory))
        {
            foreach (PhysicalRange range in pagemap.Ranges)
            {
                for (ulong i = 0; i < range.PageCount; i++)
                {
                    Pfn pfn = range.StartPfn + i;
                    if (memory.IsPresent(pfn))
                    {
                        Check(pfn);
                    }
                }
            }
        }

        // Whatever was counted but not checked is mapped from a frame outside RAM and the given pagemaps.
        foreach ((ulong pfn, (int refs, int maps)) in expected)
        {
            if (new Pfn(pfn) != PhysicalMemory.ZeroPage)
            {
                errors.Add($"{new Pfn(pfn)}: referenced {refs} times and mapped {maps} times but outside RAM and the checked pagemaps");
            }
        }

        checkedFrames = frames;
        return errors;
    }

    /// <summary>
    /// The device-private and device-coherent pagemaps registered on <paramref name="memory"/>: their free pages hold
    /// no reference (generic and p2p pages start referenced, so those pagemaps must be passed explicitly).
    /// </summary>
    public static IEnumerable<DevPagemap> RegisteredDevicePagemaps(PhysicalMemory memory)
    {
        for (int id = 1; id < 1024; id++)
        {
            if (memory.FindZoneDeviceOwner(id) is DevPagemap { Type: MemoryType.DevicePrivate or MemoryType.DeviceCoherent } pagemap)
            {
                yield return pagemap;
            }
        }
    }

    /// <summary>Visits every non-none entry of <paramref name="mm"/>'s page tables, skipping missing directories.</summary>
    private static void WalkPageTables(Mm mm, Action<ulong, Pte> visit)
    {
        PageTable tables = mm.PageTable;
        ulong address = 0;
        while (address < Mm.TaskSize)
        {
            if (tables.Find(address) is not { } table)
            {
                address = tables.NextTableAddress(address);
                continue;
            }

            for (int i = 0; i < PageTable.EntriesPerTable; i++)
            {
                Pte pte = table.Read(i);
                if (!pte.IsNone)
                {
                    visit(table.BaseAddress + ((ulong)i * PageSize.Bytes), pte);
                }
            }

            address = table.BaseAddress + ((ulong)PageTable.EntriesPerTable * PageSize.Bytes);
        }
    }
}
