namespace Hmm;

/// <summary>The base page geometry: 4 KiB pages, as on x86-64.</summary>
public static class PageSize
{
    /// <summary><c>PAGE_SHIFT</c>: log2 of the page size.</summary>
    public const int Shift = 12;

    /// <summary><c>PAGE_SIZE</c>: bytes in a base page.</summary>
    public const int Bytes = 1 << Shift;

    /// <summary>Mask that clears the offset inside a page (<c>PAGE_MASK</c>).</summary>
    public const ulong Mask = ~(ulong)(Bytes - 1);

    /// <summary>Whether a byte address or length is a multiple of the page size.</summary>
    /// <param name="value">The address or length.</param>
    /// <returns>True when page aligned.</returns>
    public static bool IsAligned(ulong value) => (value & (Bytes - 1)) == 0;
}
