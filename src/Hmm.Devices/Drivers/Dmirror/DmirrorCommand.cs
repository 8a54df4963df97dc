namespace Hmm.Drivers;

/// <summary>
/// The argument of every <see cref="Dmirror"/> command (<c>struct hmm_dmirror_cmd</c> without its user pointer:
/// the data buffer is a separate span argument of each command).
/// </summary>
/// <remarks>
/// The caller sets <see cref="Address"/> and <see cref="Pages"/>. A command zeroes <see cref="CPages"/> and
/// <see cref="Faults"/> and fills them in only when it succeeds; after a returned error they keep the values the
/// caller passed in, as the kernel does not copy the structure back to user space then.
/// </remarks>
public struct DmirrorCommand
{
    /// <summary>The first virtual address of the range, page aligned (<c>addr</c>).</summary>
    public ulong Address { get; set; }

    /// <summary>The number of pages in the range, at least one (<c>npages</c>).</summary>
    public ulong Pages { get; set; }

    /// <summary>Output: the pages the command handled; its meaning depends on the command (<c>cpages</c>).</summary>
    public ulong CPages { get; set; }

    /// <summary>Output: the successful fault rounds of a read or write (<c>faults</c>).</summary>
    public ulong Faults { get; set; }
}
