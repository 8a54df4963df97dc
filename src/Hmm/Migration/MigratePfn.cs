using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// The encoding of the source and destination arrays of a migration (<c>MIGRATE_PFN_*</c> in
/// <c>include/linux/migrate.h</c>): a page frame number shifted left by <see cref="Shift"/>, with flag bits below it.
/// </summary>
/// <remarks>
/// <code>
///  63                                   6  5   4   3   2   1   0
///  [             pfn                    ][D ][C ][W ][- ][M ][V ]
/// </code>
/// V <see cref="Valid"/>, M <see cref="Migrate"/>, W <see cref="Write"/>, C <see cref="Compound"/>, D <see cref="Device"/>;
/// bit 2 is unused (it was <c>MIGRATE_PFN_LOCKED</c> in older kernels). An entry with <see cref="Migrate"/> and no
/// <see cref="Valid"/> is an address with no page yet (a hole or the zero page) that the driver may populate.
/// </remarks>
public static class MigratePfn
{
    /// <summary><c>MIGRATE_PFN_VALID</c>: the entry names a page.</summary>
    public const ulong Valid = 1UL << 0;

    /// <summary><c>MIGRATE_PFN_MIGRATE</c>: the entry is (still) migrating.</summary>
    public const ulong Migrate = 1UL << 1;

    /// <summary><c>MIGRATE_PFN_WRITE</c>: the source was mapped writable; in a destination, map it writable.</summary>
    public const ulong Write = 1UL << 3;

    /// <summary>
    /// <c>MIGRATE_PFN_COMPOUND</c>: the entry is the head of a large folio. Reserved: there are no large folios here,
    /// so setup never reports it and a destination carrying it is treated as a base page.
    /// </summary>
    public const ulong Compound = 1UL << 4;

    /// <summary>
    /// <c>MIGRATE_PFN_DEVICE</c> (pending linux-mm series that takes device-private pages out of the physical address
    /// space): marks a device-private PFN. Accepted and ignored: PFNs here are always physical frames.
    /// </summary>
    public const ulong Device = 1UL << 5;

    /// <summary><c>MIGRATE_PFN_SHIFT</c>: where the frame number starts.</summary>
    public const int Shift = 6;

    /// <summary>The entry for a page (<c>migrate_pfn</c>): its frame number with <see cref="Valid"/>.</summary>
    /// <param name="pfn">The page.</param>
    /// <returns>The encoded entry; OR in <see cref="Write"/> to map a destination writable.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong FromPfn(Pfn pfn) => (pfn.Value << Shift) | Valid;

    /// <summary>The page an entry names, if it is valid (<c>migrate_pfn_to_page</c>).</summary>
    /// <param name="entry">An encoded entry.</param>
    /// <param name="pfn">The page, when the method returns true.</param>
    /// <returns>False when <see cref="Valid"/> is clear (no page).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryGetPage(ulong entry, out Pfn pfn)
    {
        pfn = new Pfn(entry >> Shift);
        return (entry & Valid) != 0;
    }

    /// <summary>The page an entry names, or null when it names none (<c>migrate_pfn_to_page</c>).</summary>
    /// <param name="entry">An encoded entry.</param>
    /// <returns>The page or null.</returns>
    public static Pfn? ToPage(ulong entry) => (entry & Valid) != 0 ? new Pfn(entry >> Shift) : null;

    /// <summary>Whether an entry is still marked migrating (<see cref="Migrate"/>).</summary>
    /// <param name="entry">An encoded entry.</param>
    /// <returns>True when migrating.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsMigrating(ulong entry) => (entry & Migrate) != 0;
}
