using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>The live counters behind <see cref="SimGpuStatistics"/>: plain longs updated with Interlocked, so counting never takes a lock.</summary>
internal sealed class SimGpuCounters
{
    internal long PagesCopiedToDevice;
    internal long BytesCopiedToDevice;
    internal long PagesCopiedToHost;
    internal long BytesCopiedToHost;
    internal long PagesCopiedDeviceToDevice;
    internal long BytesCopiedDeviceToDevice;
    internal long PagesCopiedHostToHost;
    internal long BytesCopiedHostToHost;
    internal long CopyBatches;
    internal long Transfers;
    internal long FailedCopies;
    internal long DelayedCopies;
    internal long TlbInvalidations;
    internal long FaultsRaised;
    internal long FaultBufferOverflows;
    internal long FaultsFetched;
    internal long DuplicatesMerged;
    internal long BatchesFetched;
    internal long Replays;
    internal long Accesses;
    internal long AccessesStopped;
    internal long BytesAccessed;
    internal long PagesAllocated;
    internal long PagesFreed;
    internal long FailedAllocations;
    internal long PagemapsRegistered;

    internal SimGpuStatistics Snapshot() => new()
    {
        PagesCopiedToDevice = Interlocked.Read(ref PagesCopiedToDevice),
        BytesCopiedToDevice = Interlocked.Read(ref BytesCopiedToDevice),
        PagesCopiedToHost = Interlocked.Read(ref PagesCopiedToHost),
        BytesCopiedToHost = Interlocked.Read(ref BytesCopiedToHost),
        PagesCopiedDeviceToDevice = Interlocked.Read(ref PagesCopiedDeviceToDevice),
        BytesCopiedDeviceToDevice = Interlocked.Read(ref BytesCopiedDeviceToDevice),
        PagesCopiedHostToHost = Interlocked.Read(ref PagesCopiedHostToHost),
        BytesCopiedHostToHost = Interlocked.Read(ref BytesCopiedHostToHost),
        CopyBatches = Interlocked.Read(ref CopyBatches),
        Transfers = Interlocked.Read(ref Transfers),
        FailedCopies = Interlocked.Read(ref FailedCopies),
        DelayedCopies = Interlocked.Read(ref DelayedCopies),
        TlbInvalidations = Interlocked.Read(ref TlbInvalidations),
        FaultsRaised = Interlocked.Read(ref FaultsRaised),
        FaultBufferOverflows = Interlocked.Read(ref FaultBufferOverflows),
        FaultsFetched = Interlocked.Read(ref FaultsFetched),
        DuplicatesMerged = Interlocked.Read(ref DuplicatesMerged),
        BatchesFetched = Interlocked.Read(ref BatchesFetched),
        Replays = Interlocked.Read(ref Replays),
        Accesses = Interlocked.Read(ref Accesses),
        AccessesStopped = Interlocked.Read(ref AccessesStopped),
        BytesAccessed = Interlocked.Read(ref BytesAccessed),
        PagesAllocated = Interlocked.Read(ref PagesAllocated),
        PagesFreed = Interlocked.Read(ref PagesFreed),
        FailedAllocations = Interlocked.Read(ref FailedAllocations),
        PagemapsRegistered = Interlocked.Read(ref PagemapsRegistered),
    };
}
