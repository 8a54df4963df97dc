namespace Hmm;

/// <summary>Flags of a <see cref="Vma"/> (<c>vm_flags</c>, the kernel's bit values).</summary>
[Flags]
public enum VmFlags : ulong
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary><c>VM_READ</c>.</summary>
    Read = 0x1,

    /// <summary><c>VM_WRITE</c>.</summary>
    Write = 0x2,

    /// <summary><c>VM_EXEC</c>.</summary>
    Exec = 0x4,

    /// <summary><c>VM_SHARED</c>: shared mapping.</summary>
    Shared = 0x8,

    /// <summary><c>VM_MAYREAD</c>.</summary>
    MayRead = 0x10,

    /// <summary><c>VM_MAYWRITE</c>.</summary>
    MayWrite = 0x20,

    /// <summary><c>VM_MAYEXEC</c>.</summary>
    MayExec = 0x40,

    /// <summary><c>VM_MAYSHARE</c>.</summary>
    MayShare = 0x80,

    /// <summary><c>VM_PFNMAP</c>: raw PFNs without struct pages; cannot be mirrored.</summary>
    PfnMap = 0x400,

    /// <summary><c>VM_IO</c>: memory-mapped I/O; cannot be mirrored.</summary>
    Io = 0x4000,

    /// <summary><c>VM_DONTCOPY</c>: not inherited by fork.</summary>
    DontCopy = 0x20000,

    /// <summary><c>VM_DONTEXPAND</c>: cannot be grown by mremap.</summary>
    DontExpand = 0x40000,

    /// <summary><c>VM_MIXEDMAP</c>: a mix of struct-page and raw PFN mappings.</summary>
    MixedMap = 0x10000000,
}
