using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// A snapshot of one simulated GPU's counters (<see cref="SimulatedGpu.Statistics"/>). Each counter is read
/// atomically; counters changing while the snapshot is taken may be read before or after a concurrent operation.
/// </summary>
/// <remarks>Error model: none (a value type of counters). Concurrency model: immutable.</remarks>
public sealed record SimGpuStatistics
{
    /// <summary>Pages copied from System RAM to device memory.</summary>
    public long PagesCopiedToDevice { get; init; }

    /// <summary>Bytes copied from System RAM to device memory.</summary>
    public long BytesCopiedToDevice { get; init; }

    /// <summary>Pages copied from device memory (this device's or another's) to System RAM.</summary>
    public long PagesCopiedToHost { get; init; }

    /// <summary>Bytes copied from device memory to System RAM.</summary>
    public long BytesCopiedToHost { get; init; }

    /// <summary>Pages copied between device memories (within this device, or to or from another device).</summary>
    public long PagesCopiedDeviceToDevice { get; init; }

    /// <summary>Bytes copied between device memories.</summary>
    public long BytesCopiedDeviceToDevice { get; init; }

    /// <summary>Pages copied from System RAM to System RAM by the device's engine.</summary>
    public long PagesCopiedHostToHost { get; init; }

    /// <summary>Bytes copied from System RAM to System RAM.</summary>
    public long BytesCopiedHostToHost { get; init; }

    /// <summary>Successful <see cref="ICopyEngine.Copy"/> calls that moved at least one page.</summary>
    public long CopyBatches { get; init; }

    /// <summary>Contiguous transfers those batches were cut into.</summary>
    public long Transfers { get; init; }

    /// <summary>Copies that failed with EIO (injected).</summary>
    public long FailedCopies { get; init; }

    /// <summary>Copies whose completion was delayed (injected).</summary>
    public long DelayedCopies { get; init; }

    /// <summary>Device TLB invalidations.</summary>
    public long TlbInvalidations { get; init; }

    /// <summary>Replayable faults raised by accesses (including those the full buffer dropped).</summary>
    public long FaultsRaised { get; init; }

    /// <summary>Faults dropped because the fault buffer was full.</summary>
    public long FaultBufferOverflows { get; init; }

    /// <summary>Fault records taken from the buffer by <see cref="IFaultSource.FetchBatch"/>.</summary>
    public long FaultsFetched { get; init; }

    /// <summary>Fetched records merged into another record of their batch.</summary>
    public long DuplicatesMerged { get; init; }

    /// <summary>Non-empty batches fetched.</summary>
    public long BatchesFetched { get; init; }

    /// <summary>Replays.</summary>
    public long Replays { get; init; }

    /// <summary>Calls of <see cref="IDeviceBackend.Access"/>.</summary>
    public long Accesses { get; init; }

    /// <summary>Accesses that stopped at a page without the permission they needed.</summary>
    public long AccessesStopped { get; init; }

    /// <summary>Bytes accessed (read or written) by the device's engines.</summary>
    public long BytesAccessed { get; init; }

    /// <summary>Device pages handed out by <see cref="IDeviceMemory.Allocate"/>.</summary>
    public long PagesAllocated { get; init; }

    /// <summary>Device pages returned to the free pool (their last reference was put).</summary>
    public long PagesFreed { get; init; }

    /// <summary>Allocations that failed by injection.</summary>
    public long FailedAllocations { get; init; }

    /// <summary>Device pagemaps registered so far.</summary>
    public long PagemapsRegistered { get; init; }
}
