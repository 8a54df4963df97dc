namespace Hmm;

/// <summary>Flags of <see cref="Mm.Mremap"/> (<c>MREMAP_*</c>, same values).</summary>
[Flags]
public enum MremapFlags
{
    /// <summary>Resize in place only.</summary>
    None = 0,

    /// <summary><c>MREMAP_MAYMOVE</c>: the mapping may move if it cannot grow in place.</summary>
    MayMove = 1,

    /// <summary><c>MREMAP_FIXED</c>: move to exactly the new address (requires <see cref="MayMove"/>).</summary>
    Fixed = 2,

    /// <summary><c>MREMAP_DONTUNMAP</c>: move the pages but leave the old range mapped and empty (requires <see cref="MayMove"/>).</summary>
    DontUnmap = 4,
}
