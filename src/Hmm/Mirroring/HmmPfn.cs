using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// The encoding of one entry of <see cref="HmmRange.HmmPfns"/> (<c>include/linux/hmm.h</c>, same bits): flags in
/// bits 53 to 63, the frame number below. On input an entry carries request flags; on output, the page's
/// state.
/// </summary>
public static class HmmPfn
{
    /// <summary><c>HMM_PFN_VALID</c> (out): the frame is valid and at least readable.</summary>
    public const ulong Valid = 1UL << 63;

    /// <summary><c>HMM_PFN_WRITE</c> (out): the page is writable. Requires <see cref="Valid"/>.</summary>
    public const ulong Write = 1UL << 62;

    /// <summary><c>HMM_PFN_ERROR</c> (out): the page cannot be accessed (no area, or an area that cannot be mirrored).</summary>
    public const ulong Error = 1UL << 61;

    /// <summary><c>HMM_PFN_DMA_MAPPED</c> (sticky): the caller has DMA-mapped this frame; preserved in every output.</summary>
    public const ulong DmaMapped = 1UL << 60;

    /// <summary><c>HMM_PFN_P2PDMA</c> (sticky): a peer-to-peer page; preserved in every output.</summary>
    public const ulong P2PDma = 1UL << 59;

    /// <summary><c>HMM_PFN_P2PDMA_BUS</c> (sticky): a peer-to-peer page mapped by bus address; preserved in every output.</summary>
    public const ulong P2PDmaBus = 1UL << 58;

    /// <summary><c>HMM_PFN_ORDER_SHIFT</c>: where the 5-bit mapping order lives.</summary>
    public const int OrderShift = 53;

    /// <summary><c>HMM_PFN_REQ_FAULT</c> (in): the output must be <see cref="Valid"/>, faulting if needed.</summary>
    public const ulong RequestFault = Valid;

    /// <summary><c>HMM_PFN_REQ_WRITE</c> (in): the output must be <see cref="Write"/>, write-faulting if needed. Use with <see cref="RequestFault"/>.</summary>
    public const ulong RequestWrite = Write;

    /// <summary><c>HMM_PFN_FLAGS</c>: every flag bit; the rest is the frame number.</summary>
    public const ulong FlagsMask = ~((1UL << OrderShift) - 1);

    /// <summary><c>HMM_PFN_INOUT_FLAGS</c>: the sticky flags carried from input to output.</summary>
    public const ulong InOutFlags = DmaMapped | P2PDma | P2PDmaBus;

    /// <summary>The frame of a valid entry (<c>hmm_pfn_to_page</c>, as a frame number).</summary>
    /// <param name="hmmPfn">An entry with <see cref="Valid"/> set.</param>
    /// <returns>The frame.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Pfn ToPfn(ulong hmmPfn) => new(hmmPfn & ~FlagsMask);

    /// <summary>The mapping order of a valid entry (<c>hmm_pfn_to_map_order</c>): 0 for a 4 KiB page.</summary>
    /// <param name="hmmPfn">An entry with <see cref="Valid"/> set.</param>
    /// <returns>log2 of the mapping size in pages.</returns>
    public static int MapOrder(ulong hmmPfn) => (int)((hmmPfn >> OrderShift) & 0x1F);
}
