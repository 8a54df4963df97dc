using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// A 64-bit page-table entry in the x86-64 layout (<c>pte_t</c>). A present entry maps a page frame; a non-present,
/// non-zero entry is a software entry that names a frame without mapping it (the kernel's swap-entry encodings
/// for device-private, migration and device-exclusive entries).
/// </summary>
/// <remarks>
/// <code>
/// present:     63      52 51                 12 11  9 8 7 6 5 4 3 2 1 0
///              [  zero  ][       pfn         ][sw ][ ][ ][D][A][ ][ ][U][W][P=1]
/// software:    63      52 51                 12 11     6 5  4..1    0
///              [  zero  ][       pfn         ][ zero  ][W][type ][P=0]
/// </code>
/// Present bits: P present, W writable, U user, A accessed, D dirty. Software types: 1 device-private,
/// 2 migration, 3 device-exclusive; W records whether the entry was writable.
/// </remarks>
public readonly record struct Pte
{
    /// <summary><c>_PAGE_PRESENT</c>.</summary>
    public const ulong PresentBit = 1UL << 0;

    /// <summary><c>_PAGE_RW</c> in a present entry.</summary>
    public const ulong WriteBit = 1UL << 1;

    /// <summary><c>_PAGE_USER</c>.</summary>
    public const ulong UserBit = 1UL << 2;

    /// <summary><c>_PAGE_ACCESSED</c>.</summary>
    public const ulong AccessedBit = 1UL << 5;

    /// <summary><c>_PAGE_DIRTY</c>.</summary>
    public const ulong DirtyBit = 1UL << 6;

    private const int PfnShift = 12;
    private const ulong PfnMask = ((1UL << 40) - 1) << PfnShift;
    private const int TypeShift = 1;
    private const ulong TypeMask = 0xFUL << TypeShift;
    private const ulong SoftwareWriteBit = 1UL << 5;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Pte(ulong raw) => Raw = raw;

    /// <summary>The raw 64-bit value.</summary>
    public ulong Raw { get; }

    /// <summary>Whether the entry is empty (<c>pte_none</c>).</summary>
    public bool IsNone => Raw == 0;

    /// <summary>Whether the entry maps a frame the CPU can access (<c>pte_present</c>).</summary>
    public bool IsPresent => (Raw & PresentBit) != 0;

    /// <summary>Whether a present entry allows writes (<c>pte_write</c>).</summary>
    public bool IsWritable => IsPresent ? (Raw & WriteBit) != 0 : (Raw & SoftwareWriteBit) != 0;

    /// <summary>Whether a present entry has been written through (<c>pte_dirty</c>).</summary>
    public bool IsDirty => IsPresent && (Raw & DirtyBit) != 0;

    /// <summary>The kind of a non-present entry; <see cref="PteKind.Present"/> or <see cref="PteKind.None"/> otherwise.</summary>
    public PteKind Kind => Raw == 0 ? PteKind.None : IsPresent ? PteKind.Present : (PteKind)((Raw & TypeMask) >> TypeShift);

    /// <summary>The frame the entry maps or names (<c>pte_pfn</c> or the software entry's offset).</summary>
    public Pfn Pfn => new((Raw & PfnMask) >> PfnShift);

    /// <summary>A present entry for a user page.</summary>
    /// <param name="pfn">The frame.</param>
    /// <param name="writable">Whether writes are allowed.</param>
    /// <param name="dirty">Whether to mark it dirty already (a write fault installs it dirty).</param>
    /// <returns>The entry.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Pte Present(Pfn pfn, bool writable, bool dirty = false) =>
        new((pfn.Value << PfnShift) | PresentBit | UserBit | AccessedBit | (writable ? WriteBit : 0) | (dirty ? DirtyBit : 0));

    /// <summary>A non-present software entry naming <paramref name="pfn"/>.</summary>
    /// <param name="kind">Device-private, migration or device-exclusive.</param>
    /// <param name="pfn">The frame it names.</param>
    /// <param name="writable">Whether the mapping it stands for was writable.</param>
    /// <returns>The entry.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="kind"/> is not a software kind.</exception>
    public static Pte Software(PteKind kind, Pfn pfn, bool writable)
    {
        if (kind is not (PteKind.DevicePrivate or PteKind.Migration or PteKind.DeviceExclusive))
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Only device-private, migration and device-exclusive entries are software entries.");
        }

        return new((pfn.Value << PfnShift) | ((ulong)kind << TypeShift) | (writable ? SoftwareWriteBit : 0));
    }

    /// <summary>This entry without write permission (<c>pte_wrprotect</c>), for present and software entries.</summary>
    /// <returns>The read-only entry.</returns>
    public Pte WriteProtected() => new(IsPresent ? Raw & ~WriteBit : Raw & ~SoftwareWriteBit);

    /// <summary>Formats the entry for diagnostics.</summary>
    /// <returns>Kind, frame and permission.</returns>
    public override string ToString() => Kind switch
    {
        PteKind.None => "pte none",
        _ => $"pte {Kind} {Pfn}{(IsWritable ? " rw" : " ro")}{(IsDirty ? " dirty" : "")}",
    };
}
