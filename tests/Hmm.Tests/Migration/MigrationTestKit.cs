using FluentAssertions;
using Hmm.Tests.AddressSpace;

namespace Hmm.Tests.Migration;

/// <summary>Shared checks of the migration tests: accounting of every mapped page, and a recording notifier chain that keeps owners.</summary>
internal static class MigrationTestKit
{
    public const ulong Page = PageSize.Bytes;

    public static PhysicalMemory NewMemory() => TestKit.NewMemory();

    /// <summary>
    /// Asserts that every page mapped in <c>[start, start + pages)</c> is accounted for: as many reverse-map entries as
    /// its mapcount, and a refcount equal to mapcount plus <paramref name="extraReferences"/> (pins, driver references).
    /// </summary>
    public static void ShouldBeAccounted(this Mm mm, ulong start, ulong pages, int extraReferences = 0)
    {
        for (ulong address = start; address < start + (pages * Page); address += Page)
        {
            Pte pte = mm.ReadPte(address);
            pte.Kind.Should().NotBe(PteKind.Migration, $"no migration entry is left at 0x{address:x}");
            if (!Mm.HoldsPage(pte))
            {
                continue;
            }

            ref readonly PageFrame frame = ref mm.Memory.Page(pte.Pfn);
            Rmap.FindMappings(mm.Memory, pte.Pfn).Should().HaveCount(frame.MapCount, $"the reverse map of {pte.Pfn} finds each of its mappings");
            frame.RefCount.Should().Be(frame.MapCount + extraReferences, $"{pte.Pfn} at 0x{address:x} holds one reference per mapping");
            frame.IsLocked.Should().BeFalse($"{pte.Pfn} is unlocked once the migration is over");
        }
    }

    /// <summary>Whether the entry at <paramref name="address"/> is a device-private page of <paramref name="driver"/>.</summary>
    public static bool IsOnDevice(this Mm mm, ulong address, MigrationTestDriver driver)
    {
        Pte pte = mm.ReadPte(address);
        return pte.Kind == PteKind.DevicePrivate && driver.Pagemap.Contains(pte.Pfn);
    }
}

/// <summary>A notifier chain that records each range, owner included.</summary>
internal sealed class OwnerRecordingChain : IMmNotifierChain
{
    private readonly Lock _lock = new();
    private readonly List<MmuNotifierRange> _starts = [];

    public static OwnerRecordingChain InstallOn(Mm mm)
    {
        var chain = new OwnerRecordingChain();
        mm.GetOrSetNotifiers(chain).Should().BeSameAs(chain);
        return chain;
    }

    public IReadOnlyList<MmuNotifierRange> Starts
    {
        get
        {
            lock (_lock)
            {
                return [.. _starts];
            }
        }
    }

    public bool InvalidateRangeStart(in MmuNotifierRange range)
    {
        lock (_lock)
        {
            _starts.Add(range);
        }

        return true;
    }

    public void InvalidateRangeEnd(in MmuNotifierRange range)
    {
    }

    public void Release()
    {
    }
}
