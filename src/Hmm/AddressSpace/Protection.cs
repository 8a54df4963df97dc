namespace Hmm;

/// <summary>Memory protection for <see cref="Mm.Mmap"/> and <see cref="Mm.Mprotect"/> (<c>PROT_*</c>, same values).</summary>
[Flags]
public enum Protection
{
    /// <summary><c>PROT_NONE</c>: no access.</summary>
    None = 0,

    /// <summary><c>PROT_READ</c>.</summary>
    Read = 1,

    /// <summary><c>PROT_WRITE</c>.</summary>
    Write = 2,

    /// <summary><c>PROT_EXEC</c>.</summary>
    Exec = 4,

    /// <summary>Read and write.</summary>
    ReadWrite = Read | Write,
}
