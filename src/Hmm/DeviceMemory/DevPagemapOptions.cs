
namespace Hmm;

/// <summary>What a driver fills in before registering device memory (the caller-set fields of <c>struct dev_pagemap</c>).</summary>
public sealed class DevPagemapOptions
{
    /// <summary>The kind of memory. Required.</summary>
    public MemoryType Type { get; init; }

    /// <summary>The physical ranges, each a positive multiple of 2 MiB starting on a 2 MiB boundary. At least one.</summary>
    public IReadOnlyList<PhysicalRange> Ranges { get; init; } = [];

    /// <summary>
    /// The owner token (<c>pgmap->owner</c>): device-private pages whose pagemap owner equals a mirror's owner
    /// are that mirror's own pages. Required for device-private and device-coherent memory.
    /// </summary>
    public object? Owner { get; init; }

    /// <summary>The driver callbacks. Required for device-private and device-coherent memory.</summary>
    public IDevPagemapOps? Ops { get; init; }

    /// <summary>A name for logs and diagnostics.</summary>
    public string Name { get; init; } = "pagemap";
}
