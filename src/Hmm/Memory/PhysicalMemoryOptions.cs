using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hmm;

/// <summary>Configuration of a <see cref="PhysicalMemory"/>.</summary>
public sealed class PhysicalMemoryOptions
{
    /// <summary>Bytes of System RAM, a positive multiple of 2 MiB. Default 256 MiB.</summary>
    public ulong RamBytes { get; init; } = 256UL << 20;

    /// <summary>
    /// Whether every page frame carries 4 KiB of real data (allocated lazily in 2 MiB blocks). False gives the
    /// metadata-only mode for timing simulations of hundreds of GiB. Default true.
    /// </summary>
    public bool StorePageData { get; init; } = true;

    /// <summary>Where the memory layer and the layers above log. Default <see cref="NullLogger.Instance"/>.</summary>
    public ILogger Logger { get; init; } = NullLogger.Instance;
}
