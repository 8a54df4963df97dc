using Hmm.Devices;
using System.Text;

namespace Hmm.Drivers;

/// <summary>
/// Counters of one <see cref="FaultServicingDriver"/> since it was created (NVIDIA UVM's tools counters: faults,
/// bytes each way, evictions). Read them at any time; each counter is updated atomically, so a read during servicing
/// sees each counter at some point of the run.
/// </summary>
public sealed class FaultServicingStatistics
{
    private long _batches;
    private long _faults;
    private long _duplicatesMerged;
    private long _pagesToDevice;
    private long _pagesToRamByEviction;
    private long _pagesToRamByCpuFault;
    private long _blocksEvicted;
    private long _cpuFaults;
    private long _remoteFaults;
    private long _pagesMappedInPlace;
    private long _faultsUnserviceable;
    private long _allocationShortfalls;
    private long _copyFailures;
    private long _invalidations;

    internal FaultServicingStatistics()
    {
    }

    /// <summary>Fault batches serviced (each charged <see cref="DeviceTiming.FarFaultLatency"/>).</summary>
    public long Batches => Volatile.Read(ref _batches);

    /// <summary>Distinct device faults serviced.</summary>
    public long Faults => Volatile.Read(ref _faults);

    /// <summary>Fault records merged into another record of the same batch.</summary>
    public long DuplicatesMerged => Volatile.Read(ref _duplicatesMerged);

    /// <summary>Pages migrated from System RAM (or created from holes) into device memory.</summary>
    public long PagesToDevice => Volatile.Read(ref _pagesToDevice);

    /// <summary>Bytes of <see cref="PagesToDevice"/>.</summary>
    public long BytesToDevice => PagesToDevice * PageSize.Bytes;

    /// <summary>Device pages moved back to System RAM by eviction (to make room, at detach or at unbind).</summary>
    public long PagesToRamByEviction => Volatile.Read(ref _pagesToRamByEviction);

    /// <summary>Bytes of <see cref="PagesToRamByEviction"/>.</summary>
    public long BytesToRamByEviction => PagesToRamByEviction * PageSize.Bytes;

    /// <summary>Device pages moved back to System RAM because the CPU touched them (<c>migrate_to_ram</c>).</summary>
    public long PagesToRamByCpuFault => Volatile.Read(ref _pagesToRamByCpuFault);

    /// <summary>Bytes of <see cref="PagesToRamByCpuFault"/>.</summary>
    public long BytesToRamByCpuFault => PagesToRamByCpuFault * PageSize.Bytes;

    /// <summary>All pages moved from device memory to System RAM.</summary>
    public long PagesToRam => PagesToRamByEviction + PagesToRamByCpuFault;

    /// <summary>Bytes of <see cref="PagesToRam"/>.</summary>
    public long BytesToRam => PagesToRam * PageSize.Bytes;

    /// <summary>Blocks chosen as eviction victims.</summary>
    public long BlocksEvicted => Volatile.Read(ref _blocksEvicted);

    /// <summary>CPU faults on this device's pages (<c>migrate_to_ram</c> calls).</summary>
    public long CpuFaults => Volatile.Read(ref _cpuFaults);

    /// <summary>Device faults on pages that were in another device's private memory and were faulted back to RAM first.</summary>
    public long RemoteFaults => Volatile.Read(ref _remoteFaults);

    /// <summary>Faulted pages mapped where they were, from <c>hmm_range_fault</c> (System RAM, or already resident here).</summary>
    public long PagesMappedInPlace => Volatile.Read(ref _pagesMappedInPlace);

    /// <summary>Faults that could not be serviced (no area, no permission, process gone, unknown address space).</summary>
    public long FaultsUnserviceable => Volatile.Read(ref _faultsUnserviceable);

    /// <summary>Times the device memory gave fewer pages than asked even after eviction (full, or an injected failure).</summary>
    public long AllocationShortfalls => Volatile.Read(ref _allocationShortfalls);

    /// <summary>Copy batches the copy engine failed (EIO); their pages stayed where they were.</summary>
    public long CopyFailures => Volatile.Read(ref _copyFailures);

    /// <summary>Interval-notifier invalidations that removed device mappings.</summary>
    public long Invalidations => Volatile.Read(ref _invalidations);

    /// <summary>Every counter, one "Name value" pair per line, in declaration order.</summary>
    /// <returns>The text.</returns>
    public override string ToString()
    {
        var text = new StringBuilder();
        text.Append("Batches ").Append(Batches).AppendLine()
            .Append("Faults ").Append(Faults).AppendLine()
            .Append("DuplicatesMerged ").Append(DuplicatesMerged).AppendLine()
            .Append("PagesToDevice ").Append(PagesToDevice).AppendLine()
            .Append("PagesToRamByEviction ").Append(PagesToRamByEviction).AppendLine()
            .Append("PagesToRamByCpuFault ").Append(PagesToRamByCpuFault).AppendLine()
            .Append("BlocksEvicted ").Append(BlocksEvicted).AppendLine()
            .Append("CpuFaults ").Append(CpuFaults).AppendLine()
            .Append("RemoteFaults ").Append(RemoteFaults).AppendLine()
            .Append("PagesMappedInPlace ").Append(PagesMappedInPlace).AppendLine()
            .Append("FaultsUnserviceable ").Append(FaultsUnserviceable).AppendLine()
            .Append("AllocationShortfalls ").Append(AllocationShortfalls).AppendLine()
            .Append("CopyFailures ").Append(CopyFailures).AppendLine()
            .Append("Invalidations ").Append(Invalidations);
        return text.ToString();
    }

    internal void AddBatch(int faults, int duplicates)
    {
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _faults, faults);
        Interlocked.Add(ref _duplicatesMerged, duplicates);
        DriverMetrics.FaultBatches.Add(1);
        DriverMetrics.FaultBatchSize.Record(faults);
        if (duplicates > 0)
        {
            DriverMetrics.FaultDuplicates.Add(duplicates);
        }
    }

    internal void AddPagesToDevice(int pages) => Interlocked.Add(ref _pagesToDevice, pages);

    internal void AddEviction(int pages)
    {
        Interlocked.Increment(ref _blocksEvicted);
        Interlocked.Add(ref _pagesToRamByEviction, pages);
        DriverMetrics.Evictions.Add(1);
    }

    internal void AddCpuFault(bool moved)
    {
        Interlocked.Increment(ref _cpuFaults);
        if (moved)
        {
            Interlocked.Increment(ref _pagesToRamByCpuFault);
        }
    }

    internal void AddRemoteFaults(int faults) => Interlocked.Add(ref _remoteFaults, faults);

    internal void AddPagesMappedInPlace(int pages) => Interlocked.Add(ref _pagesMappedInPlace, pages);

    internal void AddUnserviceable(int faults)
    {
        if (faults > 0)
        {
            Interlocked.Add(ref _faultsUnserviceable, faults);
            DriverMetrics.FaultsUnserviceable.Add(faults);
        }
    }

    internal void AddAllocationShortfall() => Interlocked.Increment(ref _allocationShortfalls);

    internal void AddCopyFailure() => Interlocked.Increment(ref _copyFailures);

    internal void AddInvalidation() => Interlocked.Increment(ref _invalidations);
}
