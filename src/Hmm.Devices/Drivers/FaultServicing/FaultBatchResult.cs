using Hmm.Devices;

namespace Hmm.Drivers;

/// <summary>What one <see cref="FaultServicingDriver.ServiceNextBatch"/> did.</summary>
/// <param name="Count">Distinct faults serviced; 0 when nothing was pending.</param>
/// <param name="DuplicatesMerged">Fault records merged into another record of the batch (same page, same access).</param>
/// <param name="Blocks">2 MiB virtual blocks the faults fell in.</param>
/// <param name="PagesMigrated">Pages moved to device memory.</param>
/// <param name="PagesMappedInPlace">Faulted pages mapped where they already were (System RAM, or device pages already resident).</param>
/// <param name="PagesEvicted">Device pages moved back to System RAM to make room.</param>
/// <param name="FaultsUnserviceable">Faults left unmapped: no area, no permission, a dead process, or an address space this driver does not serve.</param>
/// <param name="VirtualTime">Virtual nanoseconds from the fetch to the replay.</param>
public readonly record struct FaultBatchResult(
    int Count,
    int DuplicatesMerged,
    int Blocks,
    int PagesMigrated,
    int PagesMappedInPlace,
    int PagesEvicted,
    int FaultsUnserviceable,
    long VirtualTime);
