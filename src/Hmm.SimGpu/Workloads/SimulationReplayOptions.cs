using Hmm.Drivers;

namespace Hmm.SimGpu;

/// <summary>
/// What a <see cref="Simulation.Replay"/> changes from the configuration the trace was recorded with. Every
/// property is null (or false) by default, meaning "as recorded": <c>new SimulationReplayOptions()</c> replays the
/// run exactly, and its report equals the recorded run's. What the access stream itself fixes (the workload,
/// working set, seed, devices, bytes per warp access, iterations) cannot be changed.
/// </summary>
/// <remarks>
/// Error model: the values are checked by <see cref="Simulation.Replay"/> against the same ranges as
/// <see cref="SimulationOptions"/> before anything is built; a bad one gives <see cref="HmmException"/>
/// <see cref="Errno.EINVAL"/> naming it.
/// </remarks>
public sealed class SimulationReplayOptions
{
    /// <summary>Device memory per device (a multiple of 2 MiB, at least 16 MiB), or null for the recorded size.</summary>
    public ulong? DeviceMemoryBytes { get; init; }

    /// <summary>Most fault records the driver fetches in one batch (1 to 8192), or null for the recorded one.</summary>
    public int? BatchSize { get; init; }

    /// <summary>Engines per device (1 to 256), or null for the recorded number.</summary>
    public int? Engines { get; init; }

    /// <summary>Warps per engine (1 to 1024), or null for the recorded number. The warps take the recorded work items in order.</summary>
    public int? WarpsPerEngine { get; init; }

    /// <summary>Whether the machine is metadata-only, or null as recorded. A replay with data computes and checks the recorded workload's values.</summary>
    public bool? MetadataOnly { get; init; }

    /// <summary>The simulated GPUs' cost model (another device model), or null for the default one every <see cref="Simulation.Run"/> uses.</summary>
    public SimGpuCostModel? Costs { get; init; }

    /// <summary>
    /// Creates each device's residency policy (another policy), called once per device with its index; null for the
    /// default <see cref="LruResidencyPolicy"/> every <see cref="Simulation.Run"/> uses.
    /// </summary>
    public Func<int, IResidencyPolicy>? ResidencyPolicy { get; init; }

    /// <summary>The recorded options with these changes applied (not yet validated).</summary>
    internal SimulationOptions ApplyTo(SimulationOptions recorded) => new()
    {
        Workload = recorded.Workload,
        WorkingSetBytes = recorded.WorkingSetBytes,
        DeviceMemoryBytes = DeviceMemoryBytes ?? recorded.DeviceMemoryBytes,
        BatchSize = BatchSize ?? recorded.BatchSize,
        Devices = recorded.Devices,
        Seed = recorded.Seed,
        MetadataOnly = MetadataOnly ?? recorded.MetadataOnly,
        Engines = Engines ?? recorded.Engines,
        WarpsPerEngine = WarpsPerEngine ?? recorded.WarpsPerEngine,
        BytesPerItem = recorded.BytesPerItem,
        Iterations = recorded.Iterations,
    };
}
