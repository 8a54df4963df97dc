namespace Hmm;

/// <summary>Advice for <see cref="Mm.Madvise"/> (<c>MADV_*</c>, same values).</summary>
public enum Advice
{
    /// <summary><c>MADV_DONTNEED</c>: drop the pages now; anonymous memory reads as zeros afterwards, files refault from the page cache.</summary>
    DontNeed = 4,

    /// <summary>
    /// <c>MADV_FREE</c>: private anonymous pages may be discarded lazily unless written again. The simulator has no
    /// reclaim, so the pages are marked clean and lazily freeable but keep their contents until unmapped.
    /// </summary>
    Free = 8,
}
