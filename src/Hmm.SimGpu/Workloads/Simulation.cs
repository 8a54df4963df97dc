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

    /// <summary>
    /// Replays a run recorded by <see cref="Run"/> with a trace writer: rebuilds the machine from the recorded
    /// configuration, changed by <paramref name="changes"/>, and feeds it the recorded access stream (the CPU's
    /// accesses in their phases, and the kernels' work items, which the warps take in the recorded order). With no
    /// changes the report equals the recorded run's, bit for bit, except wall time; with others it shows what the
    /// same input costs on the changed machine. The trace is streamed, never loaded whole.
    /// </summary>
    /// <param name="recording">The trace of the recorded run, read from its current position; left open.</param>
    /// <param name="changes">What to change from the recorded configuration, or null to replay it as recorded.</param>
    /// <param name="trace">Where the replay's own events go (a trace that can be replayed in turn), or null.</param>
    /// <param name="cancellationToken">Stops the replay between two steps; the machine is torn down.</param>
    /// <returns>The replay's report; <see cref="SimulationReport.Options"/> are the options it ran with.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="recording"/> is null.</exception>
    /// <exception cref="TraceFormatException">The trace is truncated or corrupted (error model rule 2: EINVAL, naming the byte offset).</exception>
    /// <exception cref="HmmException">
    /// Error model: EINVAL when the trace holds no recorded run (no configuration or access stream: a trace of
    /// another program, or of a writer without them), when its records do not fit together, or when a change is
    /// out of range (checked before anything is built).
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="KernelBugException">The simulation broke an invariant (for example the warps livelocked).</exception>
    public static SimulationReport Replay(
        Stream recording,
        SimulationReplayOptions? changes = null,
        TraceWriter? trace = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(recording);
        cancellationToken.ThrowIfCancellationRequested();
        using TraceReader reader = TraceReader.Create(recording, leaveOpen: true);
        var source = new ReplaySource(reader, cancellationToken);
        (SimulationOptions recorded, _) = source.ReadConfiguration();
        SimulationOptions options = changes?.ApplyTo(recorded) ?? recorded;
        options.Validate();
        using var run = new SimulationRun(options, trace, progress: null, cancellationToken, source, changes);
        return run.Execute();
    }
}
