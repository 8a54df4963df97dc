namespace Hmm.SimGpu;

/// <summary>What one phase of a <see cref="Simulation"/> run did (the counters are the phase's own, not running totals).</summary>
public sealed class SimulationPhaseReport
{
    internal SimulationPhaseReport(string name, string description)
    {
        Name = name;
        Description = description;
    }

    /// <summary>The phase's name: cpu-init, gpu-fit, cpu-readback-fit, gpu, gpu-oversubscribed or cpu-readback.</summary>
    public string Name { get; }

    /// <summary>What the phase did, in one sentence.</summary>
    public string Description { get; }

    /// <summary>Pages (CPU phases) or work items (GPU phases) the phase processed.</summary>
    public long WorkUnits { get; internal set; }

    /// <summary>Virtual nanoseconds the phase took on the simulated clock.</summary>
    public long SimulatedNanoseconds { get; internal set; }

    /// <summary>Fault records the devices' engines raised.</summary>
    public long DeviceFaults { get; internal set; }

    /// <summary>CPU faults on device pages (each serviced by <c>migrate_to_ram</c>).</summary>
    public long CpuFaults { get; internal set; }

    /// <summary>Pages migrated from System RAM to device memory.</summary>
    public long PagesToDevice { get; internal set; }

    /// <summary>Pages migrated from device memory to System RAM (evictions and CPU faults).</summary>
    public long PagesToRam { get; internal set; }

    /// <summary>Pages evicted from device memory to make room.</summary>
    public long EvictedPages { get; internal set; }

    /// <summary>Wall-clock time of the phase (the only value that differs between two runs with the same options).</summary>
    public TimeSpan WallTime { get; internal set; }
}
