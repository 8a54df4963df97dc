namespace Hmm;

/// <summary>How a fault was raised (<c>FAULT_FLAG_*</c>, the subset the simulator models).</summary>
[Flags]
public enum FaultFlags
{
    /// <summary>A read fault by the process itself.</summary>
    None = 0,

    /// <summary><c>FAULT_FLAG_WRITE</c>: the access is a write.</summary>
    Write = 0x01,

    /// <summary><c>FAULT_FLAG_REMOTE</c>: raised on behalf of another agent (GUP, <c>hmm_range_fault</c>), not by the process.</summary>
    Remote = 0x80,

    /// <summary>
    /// <c>FAULT_FLAG_UNSHARE</c>: a read fault that also makes the page exclusive to this mapping, breaking
    /// copy-on-write without making the entry writable. GUP raises it before a read-only pin of a page the process
    /// shares, so the pin follows the process's later writes.
    /// </summary>
    Unshare = 0x400,
}
