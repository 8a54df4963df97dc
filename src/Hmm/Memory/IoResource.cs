namespace Hmm;

/// <summary>A named claim on a range of the physical address space (an entry of the kernel's <c>iomem_resource</c> tree).</summary>
/// <param name="Name">Who claimed it, e.g. <c>System RAM</c> or a driver's name.</param>
/// <param name="Range">The claimed physical range.</param>
public sealed record IoResource(string Name, PhysicalRange Range);
