namespace Hmm;

/// <summary>Flags of <see cref="Mm.GetUserPages"/> and <see cref="Mm.PinUserPages"/> (<c>FOLL_*</c>).</summary>
[Flags]
public enum GupFlags
{
    /// <summary>Read access.</summary>
    None = 0,

    /// <summary><c>FOLL_WRITE</c>: the caller will write; copy-on-write is broken first.</summary>
    Write = 0x01,

    /// <summary><c>FOLL_LONGTERM</c>: a pin held indefinitely (RDMA, VFIO). Device memory is never long-term pinned: it is migrated to RAM first.</summary>
    LongTerm = 0x100,
}
