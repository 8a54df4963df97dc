namespace Hmm;

/// <summary>One place a page is mapped: an address space and a virtual address, with the entry found there.</summary>
/// <param name="Mm">The address space.</param>
/// <param name="Address">The virtual address of the page.</param>
/// <param name="Entry">The entry mapping it when found.</param>
public readonly record struct PageMapping(Mm Mm, ulong Address, Pte Entry);
