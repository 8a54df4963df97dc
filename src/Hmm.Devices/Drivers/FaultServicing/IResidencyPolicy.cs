namespace Hmm.Drivers;

/// <summary>
/// The residency decisions of <see cref="FaultServicingDriver"/>, kept out of the driver so that prefetching,
/// thrashing detection or access-counter policies can replace them without touching the fault path: which pages of
/// a faulted 2 MiB virtual block move to device memory, and which block leaves device memory when it is full.
/// </summary>
/// <remarks>
/// <para>A block is one 2 MiB-aligned range of one <see cref="GpuVaSpace"/> (<c>uvm_va_block_t</c>): 512 pages, named
/// by a small non-negative id. Page masks are 8 words of 64 bits, bit <c>i</c> of word <c>i / 64</c> standing for
/// page <c>i</c> of the block. An id is reused only after <see cref="BlockEmptied"/> reported it.</para>
/// <para>Concurrency model: the driver calls every member under its own metadata lock, one call at a time, so an
/// implementation needs no locking of its own. A member must not call back into the driver, must not block, and
/// should not allocate once warm (it runs once per faulted block in every batch).</para>
/// <para>Error model: an exception thrown by a policy is a bug; it surfaces from the driver call that asked.</para>
/// </remarks>
public interface IResidencyPolicy
{
    /// <summary>Which pages of a faulted block to migrate to the device's memory.</summary>
    /// <param name="block">The block's id.</param>
    /// <param name="address">The block's first virtual address (2 MiB aligned).</param>
    /// <param name="faulted">The pages that faulted in this batch.</param>
    /// <param name="resident">The pages already in this device's memory.</param>
    /// <param name="migrate">All zero on entry: set the pages to migrate. Bits of resident pages are ignored; faulted
    /// pages left clear are mapped where they are (System RAM, read through the interconnect).</param>
    void SelectPagesToMigrate(int block, ulong address, ReadOnlySpan<ulong> faulted, ReadOnlySpan<ulong> resident, Span<ulong> migrate);

    /// <summary>The block to evict when device memory is full.</summary>
    /// <param name="busyBlock">The block being serviced, which must not be chosen.</param>
    /// <returns>A block that has device pages (see <see cref="BlockPopulated"/>), or -1 when there is none to evict.</returns>
    int SelectVictim(int busyBlock);

    /// <summary>Device pages were allocated for the block (it has device pages from now on, until <see cref="BlockEmptied"/>).</summary>
    /// <param name="block">The block's id.</param>
    void BlockPopulated(int block);

    /// <summary>An eviction of the block left some pages in device memory (pinned, contended, or out of RAM).</summary>
    /// <param name="block">The block's id.</param>
    void BlockEvictionIncomplete(int block);

    /// <summary>The block's last device page was freed (evicted, faulted back by the CPU, or unmapped by the process).</summary>
    /// <param name="block">The block's id.</param>
    void BlockEmptied(int block);
}
