using Hmm.Drivers;

namespace Hmm.SimGpu;

/// <summary>The run's counters summed over every device and driver at one moment, so a phase reports its own share.</summary>
internal readonly record struct CounterSnapshot(
    long DeviceFaults,
    long Batches,
    long DuplicatesMerged,
    long CpuFaults,
    long PagesToDevice,
    long BytesToDevice,
    long PagesToRam,
    long BytesToRam,
    long EvictedBlocks,
    long EvictedPages)
{
    public static CounterSnapshot Take(SimulatedGpu[] gpus, FaultServicingDriver[] drivers)
    {
        var total = default(CounterSnapshot);
        for (int d = 0; d < gpus.Length; d++)
        {
            SimGpuStatistics device = gpus[d].Statistics;
            FaultServicingStatistics driver = drivers[d].Statistics;
            total += new CounterSnapshot(
                device.FaultsRaised,
                driver.Batches,
                driver.DuplicatesMerged,
                driver.CpuFaults,
                driver.PagesToDevice,
                driver.BytesToDevice,
                driver.PagesToRam,
                driver.BytesToRam,
                driver.BlocksEvicted,
                driver.PagesToRamByEviction);
        }

        return total;
    }

    public static CounterSnapshot operator +(CounterSnapshot left, CounterSnapshot right) => new(
        left.DeviceFaults + right.DeviceFaults,
        left.Batches + right.Batches,
        left.DuplicatesMerged + right.DuplicatesMerged,
        left.CpuFaults + right.CpuFaults,
        left.PagesToDevice + right.PagesToDevice,
        left.BytesToDevice + right.BytesToDevice,
        left.PagesToRam + right.PagesToRam,
        left.BytesToRam + right.BytesToRam,
        left.EvictedBlocks + right.EvictedBlocks,
        left.EvictedPages + right.EvictedPages);

    public static CounterSnapshot operator -(CounterSnapshot left, CounterSnapshot right) => new(
        left.DeviceFaults - right.DeviceFaults,
        left.Batches - right.Batches,
        left.DuplicatesMerged - right.DuplicatesMerged,
        left.CpuFaults - right.CpuFaults,
        left.PagesToDevice - right.PagesToDevice,
        left.BytesToDevice - right.BytesToDevice,
        left.PagesToRam - right.PagesToRam,
        left.BytesToRam - right.BytesToRam,
        left.EvictedBlocks - right.EvictedBlocks,
        left.EvictedPages - right.EvictedPages);
}
