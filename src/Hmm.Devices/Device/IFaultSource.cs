namespace Hmm.Devices;

/// <summary>
/// The device's replayable fault buffer. Engines that miss in the device page table push fault records and
/// stall; a driver fetches them in batches, services them, and replays, which lets the stalled accesses retry.
/// Within one fetched batch, faults on the same page with the same access kind are merged into one record
/// (counted in <see cref="FaultBatchInfo.DuplicatesMerged"/>), as NVIDIA UVM does.
/// </summary>
/// <remarks>
/// <para>Error model: an empty destination gives <see cref="HmmException"/> EINVAL.</para>
/// <para>Concurrency model: thread-safe; one driver thread fetches at a time.</para>
/// </remarks>
public interface IFaultSource
{
    /// <summary>Fault records waiting to be fetched (before merging).</summary>
    int Pending { get; }

    /// <summary>The most records one batch returns (the driver's batch size; default 256).</summary>
    int BatchSize { get; }

    /// <summary>
    /// Takes up to <see cref="BatchSize"/> records, oldest first, merges duplicates, and writes the distinct
    /// faults to <paramref name="faults"/> in arrival order.
    /// </summary>
    /// <param name="faults">At least one slot; at most its length distinct faults are written.</param>
    /// <returns>What the batch held; <see cref="FaultBatchInfo.Count"/> is 0 when nothing was pending.</returns>
    /// <exception cref="HmmException">EINVAL for an empty destination.</exception>
    FaultBatchInfo FetchBatch(Span<DeviceFault> faults);

    /// <summary>Lets the engines stalled on serviced faults retry (the replay); charged on the clock.</summary>
    void Replay();
}
