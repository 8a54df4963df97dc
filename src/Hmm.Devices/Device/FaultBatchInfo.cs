namespace Hmm.Devices;

/// <summary>What one fetched fault batch held.</summary>
/// <param name="Count">Distinct faults written to the caller's span.</param>
/// <param name="DuplicatesMerged">Records merged into another record of the batch (same page, same access).</param>
/// <param name="Fetched">Records taken from the buffer: <see cref="Count"/> + <see cref="DuplicatesMerged"/>.</param>
public readonly record struct FaultBatchInfo(int Count, int DuplicatesMerged, int Fetched);
