namespace Hmm.SimGpu;

/// <summary>How far a <see cref="Simulation"/> run is, reported through <see cref="IProgress{T}"/>.</summary>
/// <param name="Phase">The phase running now (for example "cpu-init", "gpu-fit", "cpu-readback").</param>
/// <param name="Completed">Work units done so far over the whole run (pages the CPU touched plus GPU work items).</param>
/// <param name="Total">Work units of the whole run; <paramref name="Completed"/> reaches it when the run ends.</param>
public readonly record struct SimulationProgress(string Phase, long Completed, long Total);
