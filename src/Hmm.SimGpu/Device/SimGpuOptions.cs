using Hmm.Devices;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging;

namespace Hmm.SimGpu;

/// <summary>The shape of one simulated GPU: its memory, fault buffer and costs.</summary>
/// <remarks>
/// <para>Error model: the <see cref="SimulatedGpu"/> constructor validates the options and throws
/// <see cref="HmmException"/> EINVAL (or <see cref="ArgumentNullException"/> for a null <see cref="Costs"/> or
/// <see cref="Logger"/>) before anything is created.</para>
/// <para>Concurrency model: immutable once built.</para>
/// </remarks>
public sealed class SimGpuOptions
{
    /// <summary>Bytes in one 2 MiB page-table block, the unit of device memory registration.</summary>
    internal const long RegistrationUnit = 2L << 20;

    /// <summary>
    /// The kind of device memory: <see cref="MemoryType.DevicePrivate"/> (default; the CPU faults on it and the driver
    /// migrates pages back) or <see cref="MemoryType.DeviceCoherent"/> (the CPU reads and writes it in place).
    /// </summary>
    public MemoryType MemoryType { get; init; } = MemoryType.DevicePrivate;

    /// <summary>Device memory in bytes: a positive multiple of <see cref="ChunkBytes"/>. Default 256 MiB.</summary>
    public long MemoryBytes { get; init; } = 256L << 20;

    /// <summary>
    /// Bytes per chunk, the unit the device hands out contiguously and a driver evicts: a positive multiple of 2 MiB,
    /// at most 1 GiB. Default 2 MiB (NVIDIA UVM's root chunk and va_block, nouveau's chunk).
    /// </summary>
    public long ChunkBytes { get; init; } = 2L << 20;

    /// <summary>The most fault records one fetched batch takes (1 to <see cref="FaultBufferEntries"/>). Default 256, NVIDIA UVM's batch count.</summary>
    public int FaultBatchSize { get; init; } = 256;

    /// <summary>
    /// Fault records the buffer holds before it overflows and drops new faults (1 to 16 777 216). Default 8192: an
    /// assumption of the order of a hardware replayable fault buffer.
    /// </summary>
    public int FaultBufferEntries { get; init; } = 8192;

    /// <summary>What the device's work costs on the virtual clock.</summary>
    public SimGpuCostModel Costs { get; init; } = new();

    /// <summary>Where the device logs pagemap registration and teardown, and the first fault-buffer overflow.</summary>
    public ILogger Logger { get; init; } = NullLogger.Instance;

    /// <summary>Throws when an option is out of range.</summary>
    internal void Validate()
    {
        if (MemoryType is not (MemoryType.DevicePrivate or MemoryType.DeviceCoherent))
        {
            throw new HmmException(Errno.EINVAL, $"Memory type {MemoryType} is not device-private or device-coherent.");
        }

        if (ChunkBytes <= 0 || ChunkBytes % RegistrationUnit != 0 || ChunkBytes > 1L << 30)
        {
            throw new HmmException(Errno.EINVAL, $"Chunk size {ChunkBytes} must be a positive multiple of 2 MiB, at most 1 GiB.");
        }

        if (MemoryBytes <= 0 || MemoryBytes % ChunkBytes != 0 || MemoryBytes > 1L << Pfn.MaxPhysicalAddressBits - 1)
        {
            throw new HmmException(Errno.EINVAL, $"Device memory {MemoryBytes} must be a positive multiple of the chunk size {ChunkBytes}, below 2^{Pfn.MaxPhysicalAddressBits - 1}.");
        }

        if (FaultBufferEntries < 1 || FaultBufferEntries > 1 << 24)
        {
            throw new HmmException(Errno.EINVAL, $"Fault buffer of {FaultBufferEntries} entries must hold 1 to 16777216.");
        }

        if (FaultBatchSize < 1 || FaultBatchSize > FaultBufferEntries)
        {
            throw new HmmException(Errno.EINVAL, $"Fault batch size {FaultBatchSize} must be 1 to the buffer's {FaultBufferEntries} entries.");
        }

        ArgumentNullException.ThrowIfNull(Costs);
        ArgumentNullException.ThrowIfNull(Logger);
        Costs.Validate();
    }
}
