namespace Hmm;

/// <summary>
/// The places where <see cref="FaultInjector"/> can make a simulated kernel step fail, so that callers can
/// prove their error paths (the kernel's fault-injection framework, <c>failslab</c> and friends).
/// </summary>
public enum FaultPoint
{
    /// <summary>A System RAM page allocation fails with <see cref="Errno.ENOMEM"/>.</summary>
    PageAllocation,

    /// <summary><c>memremap_pages</c>: creating the memmap sections for a range (<c>add_pages</c>) fails.</summary>
    MemremapAddSections,

    /// <summary><c>memremap_pages</c>: initialising the range's struct pages fails.</summary>
    MemremapInitPages,

    /// <summary><c>memremap_pages</c>: publishing the PFN-to-pagemap lookup (<c>pgmap_array</c> store) fails.</summary>
    MemremapPublishLookup,

    /// <summary><c>devm_add_action</c>: registering a device-managed release action fails.</summary>
    DevmAddAction,
}
