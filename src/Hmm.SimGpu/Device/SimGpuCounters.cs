using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// The live counters behind <see cref="SimGpuStatistics"/>: plain longs updated with Interlocked, so counting never
/// takes a lock, except the ones written under a lock their writer already holds: the device-access counters, which
/// each address space keeps under its gate (<see cref="SimAccessCounters"/>) and <see cref="Snapshot"/> sums,
/// <see cref="FaultsRaised"/> and <see cref="FaultBufferOverflows"/>, under the fault buffer's lock, and the copy
/// counters (pages and bytes copied, <see cref="CopyBatches"/>, <see cref="Transfers"/>), under the copy engine's.
/// </summary>
internal sealed class SimGpuCounters
{
    // Guards _spaces (the list, not the counters in it).
    private readonly Lock _spacesLock = new();
    private SimAccessCounters[] _spaces = [];
    private int _spaceCount;

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
    internal long PagesAllocated;
    internal long PagesFreed;
    internal long FailedAllocations;
    internal long PagemapsRegistered;

    /// <summary>Adds the access counters of a new address space to the ones <see cref="Snapshot"/> sums.</summary>
    internal void Register(SimAccessCounters counters)
    {
        lock (_spacesLock)
        {
            if (_spaceCount == _spaces.Length)
            {
                Array.Resize(ref _spaces, Math.Max(4, 2 * _spaces.Length));
            }

            _spaces[_spaceCount] = counters;
            _spaceCount++;
        }
    }

    internal SimGpuStatistics Snapshot()
    {
        long accesses = 0;
        long stopped = 0;
        long bytes = 0;
        lock (_spacesLock)
        {
            for (int i = 0; i < _spaceCount; i++)
            {
                SimAccessCounters space = _spaces[i];
                accesses += Interlocked.Read(ref space.Accesses);
                stopped += Interlocked.Read(ref space.AccessesStopped);
                bytes += Interlocked.Read(ref space.BytesAccessed);
            }
        }

        return Build(accesses, stopped, bytes);
    }

    private SimGpuStatistics Build(long accesses, long accessesStopped, long bytesAccessed) => new()
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
        Accesses = accesses,
        AccessesStopped = accessesStopped,
        BytesAccessed = bytesAccessed,
        PagesAllocated = Interlocked.Read(ref PagesAllocated),
        PagesFreed = Interlocked.Read(ref PagesFreed),
        FailedAllocations = Interlocked.Read(ref FailedAllocations),
        PagemapsRegistered = Interlocked.Read(ref PagemapsRegistered),
    };
}
