using System.Runtime.InteropServices;

namespace Hmm.Conformance;

/// <summary>
/// The selftests' <c>struct hmm_buffer</c>: a range of the process under test (<see cref="Ptr"/>, which a scenario
/// may move inside its mapping), the user buffer the driver copies into or out of (<see cref="Mirror"/>), and the
/// counters the last successful command returned.
/// </summary>
internal sealed class HmmBuffer
{
    public HmmBuffer(ulong size, int mirrorBytes)
    {
        Size = size;
        Mirror = new byte[mirrorBytes];
    }

    /// <summary>Where the mapping starts (what the selftests keep in <c>old_ptr</c> and unmap at the end).</summary>
    public ulong Base { get; set; }

    /// <summary>The address commands start at (<c>buffer-&gt;ptr</c>).</summary>
    public ulong Ptr { get; set; }

    /// <summary>The mapping's length in bytes (<c>buffer-&gt;size</c>).</summary>
    public ulong Size { get; }

    /// <summary>The user buffer (<c>buffer-&gt;mirror</c>).</summary>
    public byte[] Mirror { get; }

    /// <summary>The mirror seen as the ints the selftests compare.</summary>
    public Span<int> MirrorInts => MemoryMarshal.Cast<byte, int>(Mirror.AsSpan());

    /// <summary><c>cmd.cpages</c> of the last command that succeeded.</summary>
    public ulong CPages { get; set; }

    /// <summary><c>cmd.faults</c> of the last command that succeeded.</summary>
    public ulong Faults { get; set; }
}
