using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// A 64-bit page-table entry in the x86-64 layout (<c>pte_t</c>). A present entry maps a page frame; a non-present,
/// non-zero entry is a software entry that names a frame without mapping it (the kernel's swap-entry encodings
/// for device-private, migration and device-exclusive entries).
/// </summary>
/// <remarks>
/// <code>
/// present:     63      52 51                 12 11 10 9 8 7 6 5 4 3 2 1 0
///              [  zero  ][       pfn         ][    ][S][ ][ ][D][A][ ][ ][U][W][P=1]
/// software:    63      52 51                 12 11     6 5  4..1    0
///              [  zero  ][       pfn         ][ zero  ][W][type ][P=0]
/// </code>
/// Present bits: P present, W writable, U user, A accessed, D dirty, S special (<c>_PAGE_SPECIAL</c>: the frame is
/// mapped without a struct page reference, by <c>remap_pfn_range</c> or <c>vmf_insert_pfn</c>). Software types: 1 device-private,
/// 2 migration, 3 device-exclusive; W records whether the entry was writable.
/// </remarks>
public readonly record struct Pte
{
    /// <summary><c>_PAGE_PRESENT</c>.</summary>
    internal const ulong PresentBit = 1UL << 0;

    /// <summary><c>_PAGE_RW</c> in a present entry.</summary>
    internal const ulong WriteBit = 1UL << 1;

    /// <summary><c>_PAGE_USER</c>.</summary>
    internal const ulong UserBit = 1UL << 2;

    /// <summary><c>_PAGE_ACCESSED</c>.</summary>
    internal const ulong AccessedBit = 1UL << 5;

    /// <summary><c>_PAGE_DIRTY</c>.</summary>
    internal const ulong DirtyBit = 1UL << 6;

    /// <summary><c>_PAGE_SPECIAL</c> (software bit 9 of a present entry).</summary>
    internal const ulong SpecialBit = 1UL << 9;

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

    /// <summary>
    /// Whether a present entry maps its frame without holding a reference on a struct page (<c>pte_special</c>): set by
    /// <see cref="Mm.RemapPfnRange"/> and <see cref="Mm.InsertPfn"/> in <see cref="VmFlags.PfnMap"/> or
    /// <see cref="VmFlags.MixedMap"/> areas. Such an entry names no page a mirror may reference (the kernel's
    /// <c>vm_normal_page</c> returns NULL for it).
    /// </summary>
    public bool IsSpecial => (Raw & (PresentBit | SpecialBit)) == (PresentBit | SpecialBit);

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
    internal static Pte Present(Pfn pfn, bool writable, bool dirty = false) =>
        new((pfn.Value << PfnShift) | PresentBit | UserBit | AccessedBit | (writable ? WriteBit : 0) | (dirty ? DirtyBit : 0));

    /// <summary>A non-present software entry naming <paramref name="pfn"/>.</summary>
    /// <param name="kind">Device-private, migration or device-exclusive.</param>
    /// <param name="pfn">The frame it names.</param>
    /// <param name="writable">Whether the mapping it stands for was writable.</param>
    /// <returns>The entry.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="kind"/> is not a software kind.</exception>
    internal static Pte Software(PteKind kind, Pfn pfn, bool writable)
    {
        if (kind is not (PteKind.DevicePrivate or PteKind.Migration or PteKind.DeviceExclusive))
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Only device-private, migration and device-exclusive entries are software entries.");
        }

        return new((pfn.Value << PfnShift) | ((ulong)kind << TypeShift) | (writable ? SoftwareWriteBit : 0));
    }

    /// <summary>A present special entry (<c>pte_mkspecial</c>): maps <paramref name="pfn"/> without a page reference.</summary>
    internal static Pte PresentSpecial(Pfn pfn, bool writable) => new(Present(pfn, writable).Raw | SpecialBit);

    /// <summary>This entry without write permission (<c>pte_wrprotect</c>), for present and software entries.</summary>
    /// <returns>The read-only entry.</returns>
    internal Pte WriteProtected() => new(IsPresent ? Raw & ~WriteBit : Raw & ~SoftwareWriteBit);

    /// <summary>Formats the entry for diagnostics.</summary>
    /// <returns>Kind, frame and permission.</returns>
    public override string ToString() => Kind switch
    {
        PteKind.None => "pte none",
        _ => $"pte {Kind} {Pfn}{(IsWritable ? " rw" : " ro")}{(IsDirty ? " dirty" : "")}{(IsSpecial ? " special" : "")}",
    };
}
