using System.Globalization;

namespace Hmm;

/// <summary>
/// A range of physical addresses, <c>[Start, End)</c>. The kernel's <c>struct range</c> uses an inclusive end;
/// this type uses an exclusive end like the rest of the SDK (see docs/kernel-map.md).
/// </summary>
public readonly record struct PhysicalRange
{
    /// <summary>Creates a range from its first byte and its length.</summary>
    /// <param name="start">The first physical address.</param>
    /// <param name="length">The length in bytes.</param>
    public PhysicalRange(ulong start, ulong length)
    {
        Start = start;
        Length = length;
    }

    /// <summary>The first physical address.</summary>
    public ulong Start { get; }

    /// <summary>The length in bytes.</summary>
    public ulong Length { get; }

    /// <summary>One past the last physical address. Wraps when the range overflows; validators check that.</summary>
    public ulong End => Start + Length;

    /// <summary>The first frame of the range.</summary>
    public Pfn StartPfn => Pfn.FromPhysicalAddress(Start);

    /// <summary>The number of 4 KiB frames in the range.</summary>
    public ulong PageCount => Length >> PageSize.Shift;

    /// <summary>Whether the two ranges share at least one byte.</summary>
    /// <param name="other">The other range.</param>
    /// <returns>True when they overlap.</returns>
    public bool Overlaps(PhysicalRange other) => Start < other.End && other.Start < End;

    /// <summary>Whether the frame lies inside the range.</summary>
    /// <param name="pfn">The frame.</param>
    /// <returns>True when the frame's first byte is in the range.</returns>
    public bool Contains(Pfn pfn) => pfn.PhysicalAddress >= Start && pfn.PhysicalAddress < End;

    /// <summary>Formats as <c>[0x..-0x..)</c>.</summary>
    /// <returns>The formatted range.</returns>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"[0x{Start:x}-0x{End:x})");
}
