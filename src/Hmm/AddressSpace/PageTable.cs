using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// An x86-64 4-level page table: PGD, PUD and PMD directories of 512 slots over 512-entry PTE tables (4 KiB
/// pages; the four levels span 2^48 bytes, of which user space is the lower half, below <see cref="Mm.TaskSize"/>). Tables are allocated on first use and freed when an unmap leaves them empty.
/// </summary>
/// <remarks>
/// <para>Concurrency model: directories and PTE tables are published with volatile writes under
/// <see cref="_populateLock"/> (the kernel's <c>mm->page_table_lock</c>), so walkers read them without a lock.
/// Tables are freed only by <see cref="FreeEmptyTables"/>, which runs with the mmap lock held for writing, so
/// no walker (all of which hold it for reading) can be inside a table being freed. A PTE changes only under its
/// table's <see cref="PteTable.Lock"/> (the split PTE lock).</para>
/// </remarks>
internal sealed class PageTable
{
    public const int EntriesPerTable = 512;
    private const int LevelBits = 9;
    private const int PteShift = 12;
    private const int PmdShift = PteShift + LevelBits;
    private const int PudShift = PmdShift + LevelBits;
    private const int PgdShift = PudShift + LevelBits;

    private readonly Lock _populateLock = new();
    private readonly Directory _pgd = new();

    /// <summary>How many PTE tables exist (for tests and diagnostics).</summary>
    public int PteTableCount { get; private set; }

    /// <summary>The PTE table covering <paramref name="address"/>, or null if none exists. Lock-free.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public PteTable? Find(ulong address)
    {
        if (Volatile.Read(ref _pgd.Slots[Index(address, PgdShift)]) is not Directory pud
            || Volatile.Read(ref pud.Slots[Index(address, PudShift)]) is not Directory pmd)
        {
            return null;
        }

        return Volatile.Read(ref pmd.Slots[Index(address, PmdShift)]) as PteTable;
    }

    /// <summary>The PTE table covering <paramref name="address"/>, allocating the path to it if needed (<c>pte_alloc</c>).</summary>
    public PteTable FindOrAllocate(ulong address) => Find(address) ?? Allocate(address);

    /// <summary>The index of <paramref name="address"/>'s entry in its PTE table.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int PteIndex(ulong address) => Index(address, PteShift);

    /// <summary>
    /// Frees the PTE tables and directories inside <c>[start, end)</c> that hold no entry (<c>free_pgtables</c>).
    /// Caller holds the mmap lock for writing.
    /// </summary>
    public void FreeEmptyTables(ulong start, ulong end)
    {
        lock (_populateLock)
        {
            ulong address = start & ~((1UL << PmdShift) - 1);
            while (address < end)
            {
                if (_pgd.Slots[Index(address, PgdShift)] is not Directory pud)
                {
                    address = NextBoundary(address, PgdShift);
                    continue;
                }

                if (pud.Slots[Index(address, PudShift)] is not Directory pmd)
                {
                    address = NextBoundary(address, PudShift);
                    continue;
                }

                int pmdIndex = Index(address, PmdShift);
                if (pmd.Slots[pmdIndex] is PteTable { Used: 0 })
                {
                    Volatile.Write(ref pmd.Slots[pmdIndex], null);
                    pmd.Used--;
                    PteTableCount--;
                }

                if (pmd.Used == 0)
                {
                    Volatile.Write(ref pud.Slots[Index(address, PudShift)], null);
                    pud.Used--;
                }

                if (pud.Used == 0)
                {
                    Volatile.Write(ref _pgd.Slots[Index(address, PgdShift)], null);
                }

                address = NextBoundary(address, PmdShift);
            }
        }
    }

    /// <summary>
    /// For a walker that found no PTE table at <paramref name="address"/>: the next address where one could exist,
    /// skipping the whole span of a missing PUD or PMD directory, so walking a sparse range costs per populated
    /// directory rather than per 2 MiB. Lock-free, like <see cref="Find"/>.
    /// </summary>
    public ulong NextTableAddress(ulong address)
    {
        if (Volatile.Read(ref _pgd.Slots[Index(address, PgdShift)]) is not Directory pud)
        {
            return NextBoundary(address, PgdShift);
        }

        return Volatile.Read(ref pud.Slots[Index(address, PudShift)]) is Directory ? NextBoundary(address, PmdShift) : NextBoundary(address, PudShift);
    }

    private static ulong NextBoundary(ulong address, int shift) => (address | ((1UL << shift) - 1)) + 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Index(ulong address, int shift) => (int)((address >> shift) & (EntriesPerTable - 1));

    private PteTable Allocate(ulong address)
    {
        lock (_populateLock)
        {
            Directory pud = Child<Directory>(_pgd, Index(address, PgdShift), static _ => new Directory());
            Directory pmd = Child<Directory>(pud, Index(address, PudShift), static _ => new Directory());
            return Child(pmd, Index(address, PmdShift), a => new PteTable(a & ~((1UL << PmdShift) - 1)), address);
        }
    }

    private T Child<T>(Directory parent, int index, Func<ulong, T> create, ulong address = 0)
        where T : class
    {
        if (parent.Slots[index] is T existing)
        {
            return existing;
        }

        T child = create(address);
        if (child is PteTable)
        {
            PteTableCount++;
        }

        Volatile.Write(ref parent.Slots[index], child);
        parent.Used++;
        return child;
    }

    private sealed class Directory
    {
        public readonly object?[] Slots = new object?[EntriesPerTable];
        public int Used;
    }
}
