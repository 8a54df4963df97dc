namespace Hmm.SimGpu;

/// <summary>
/// Runs a workload on a simulated machine and reports what it cost: the process allocates a buffer, the CPU
/// initialises its inputs, GPU kernels run over it (device faults serviced in batches by a
/// <see cref="Hmm.Drivers.FaultServicingDriver"/> per device, pages migrating to device memory), and the CPU reads
/// the results back (<c>migrate_to_ram</c>) and checks them. When the working set is larger than the devices'
/// memory, the kernels first run over the part that fits (phase gpu-fit, read back in cpu-readback-fit) and then
/// over everything (gpu-oversubscribed), which forces eviction.
/// </summary>
public static class Simulation
{
    /// <summary>
    /// Builds the machine the options describe, runs every phase, tears the machine down and returns the report.
    /// With a <paramref name="trace"/> writer, the run's trace events (docs/trace-format.md) are recorded into it:
    /// the writer is attached to the machine's <see cref="PhysicalMemory.Trace"/> for the whole run, teardown
    /// included, and detached before this returns or throws. The caller owns the writer and disposes it, which
    /// ends the trace.
    /// </summary>
    /// <param name="options">What to run.</param>
    /// <param name="progress">Where to report progress (from the calling thread, about 200 times a run), or null.</param>
    /// <param name="trace">Where the run's events go, or null to run without tracing.</param>
    /// <param name="cancellationToken">Stops the run between two steps; the machine is torn down.</param>
    /// <returns>The counters, times and data check of the run, the same as without tracing.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="HmmException">Error model: EINVAL for an option out of range (see <see cref="SimulationOptions"/>), checked before anything is built.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="KernelBugException">The simulation broke an invariant (for example the warps livelocked).</exception>
    public static SimulationReport Run(
        SimulationOptions options,
        IProgress<SimulationProgress>? progress = null,
        TraceWriter? trace = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        cancellationToken.ThrowIfCancellationRequested();
        using var run = new SimulationRun(options, trace, progress, cancellationToken);
        return run.Execute();
    }
}
