namespace Hmm;

/// <summary>What a fault handler reports (<c>vm_fault_t</c>, the subset a device driver returns).</summary>
[Flags]
public enum VmFaultResult
{
    /// <summary>Handled; the access can be retried and will find the page.</summary>
    None = 0,

    /// <summary><c>VM_FAULT_OOM</c>: no memory to satisfy the fault.</summary>
    Oom = 0x1,

    /// <summary><c>VM_FAULT_SIGBUS</c>: the page cannot be brought back; the access fails.</summary>
    Sigbus = 0x2,

    /// <summary><c>VM_FAULT_SIGSEGV</c>: the area does not permit the access (a write to a read-only area, any access to an area without access); the architecture's handler would raise <c>SIGSEGV</c>.</summary>
    Sigsegv = 0x40,

    /// <summary><c>VM_FAULT_RETRY</c>: the handler dropped locks; the faulting path retries from the start.</summary>
    Retry = 0x400,
}
