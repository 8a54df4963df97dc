using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// A page frame number: a physical address shifted right by <see cref="PageSize.Shift"/>. The kernel's
/// <c>unsigned long pfn</c>, typed so it cannot be confused with a virtual address or a byte count.
/// </summary>
public readonly record struct Pfn : IComparable<Pfn>
{
    /// <summary>The largest physical address width the simulator supports (x86-64's <c>MAX_PHYSMEM_BITS</c>).</summary>
    public const int MaxPhysicalAddressBits = 46;

    /// <summary>One past the largest valid frame number.</summary>
    public const ulong Limit = 1UL << (MaxPhysicalAddressBits - PageSize.Shift);

    /// <summary>Wraps a raw frame number.</summary>
    /// <param name="value">The frame number.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Pfn(ulong value) => Value = value;

    /// <summary>The raw frame number.</summary>
    public ulong Value { get; }

    /// <summary>The physical address of the first byte of this frame.</summary>
    public ulong PhysicalAddress => Value << PageSize.Shift;

    /// <summary>The frame that holds the given physical address (<c>PHYS_PFN</c>).</summary>
    /// <param name="physicalAddress">Any byte address inside the frame.</param>
    /// <returns>The frame number.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Pfn FromPhysicalAddress(ulong physicalAddress) => new(physicalAddress >> PageSize.Shift);

    /// <summary>The frame <paramref name="count"/> frames after <paramref name="pfn"/>.</summary>
    /// <param name="pfn">The base frame.</param>
    /// <param name="count">How many frames to advance.</param>
    /// <returns>The advanced frame.</returns>
    [SuppressMessage("Usage", "CA2225:Operator overloads have named alternates", Justification = "Add is the named alternate.")]
    public static Pfn operator +(Pfn pfn, ulong count) => new(pfn.Value + count);

    /// <summary>The frame <paramref name="count"/> frames after this one.</summary>
    /// <param name="count">How many frames to advance.</param>
    /// <returns>The advanced frame.</returns>
    public Pfn Add(ulong count) => new(Value + count);

    /// <summary>Orders frames by number.</summary>
    /// <param name="other">The frame to compare with.</param>
    /// <returns>The comparison of the two frame numbers.</returns>
    public int CompareTo(Pfn other) => Value.CompareTo(other.Value);

    /// <summary>Whether <paramref name="left"/> precedes <paramref name="right"/>.</summary>
    /// <param name="left">The first frame.</param>
    /// <param name="right">The second frame.</param>
    /// <returns>True when the first frame number is smaller.</returns>
    public static bool operator <(Pfn left, Pfn right) => left.Value < right.Value;

    /// <summary>Whether <paramref name="left"/> follows <paramref name="right"/>.</summary>
    /// <param name="left">The first frame.</param>
    /// <param name="right">The second frame.</param>
    /// <returns>True when the first frame number is larger.</returns>
    public static bool operator >(Pfn left, Pfn right) => left.Value > right.Value;

    /// <summary>Whether <paramref name="left"/> precedes or equals <paramref name="right"/>.</summary>
    /// <param name="left">The first frame.</param>
    /// <param name="right">The second frame.</param>
    /// <returns>True when the first frame number is not larger.</returns>
    public static bool operator <=(Pfn left, Pfn right) => left.Value <= right.Value;

    /// <summary>Whether <paramref name="left"/> follows or equals <paramref name="right"/>.</summary>
    /// <param name="left">The first frame.</param>
    /// <param name="right">The second frame.</param>
    /// <returns>True when the first frame number is not smaller.</returns>
    public static bool operator >=(Pfn left, Pfn right) => left.Value >= right.Value;

    /// <summary>Formats as the kernel prints frames: <c>pfn 0x1a2b</c>.</summary>
    /// <returns>The formatted frame number.</returns>
    public override string ToString() => "pfn 0x" + Value.ToString("x", CultureInfo.InvariantCulture);
}
