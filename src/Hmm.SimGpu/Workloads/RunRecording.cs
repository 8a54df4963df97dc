using System.Globalization;

namespace Hmm.SimGpu;

/// <summary>
/// What a traced <see cref="Simulation"/> run records for replay, beyond the events of the layers: its
/// configuration (<see cref="TraceEventKind.RunConfiguration"/> fields, numbered here), its phases
/// (<see cref="TraceEventKind.Phase"/>, numbered here) and, inside them, its kernel launches and access stream.
/// docs/trace-format.md lists the numbers; they are part of the file format and never renumbered.
/// </summary>
internal static class RunRecording
{
    public const uint WorkloadField = 1;
    public const uint WorkingSetField = 2;
    public const uint DeviceMemoryField = 3;
    public const uint BatchSizeField = 4;
    public const uint DevicesField = 5;
    public const uint SeedField = 6;
    public const uint MetadataOnlyField = 7;
    public const uint EnginesField = 8;
    public const uint WarpsPerEngineField = 9;
    public const uint BytesPerItemField = 10;
    public const uint IterationsField = 11;
    public const uint BufferAddressField = 12;

    public const uint CpuInitPhase = 1;
    public const uint GpuFitPhase = 2;
    public const uint CpuReadBackFitPhase = 3;
    public const uint GpuOversubscribedPhase = 4;
    public const uint GpuPhase = 5;
    public const uint CpuReadBackPhase = 6;

    private static readonly string[] s_fieldNames =
    [
        string.Empty, "workload", "working set", "device memory", "batch size", "devices", "seed", "metadata-only",
        "engines", "warps per engine", "bytes per item", "iterations", "buffer address",
    ];

    private static readonly (string Name, string Description, bool Gpu)[] s_phases =
    [
        default,
        ("cpu-init", "the CPU writes the kernels' input pages", false),
        ("gpu-fit", "GPU kernels over the part of the buffer that fits in device memory", true),
        ("cpu-readback-fit", "the CPU reads that part's results back and checks them", false),
        ("gpu-oversubscribed", "GPU kernels over the whole buffer, more than device memory holds", true),
        ("gpu", "GPU kernels over the whole buffer, which fits in device memory", true),
        ("cpu-readback", "the CPU reads every result back and checks it", false),
    ];

    /// <summary>The name, description and engine of phase <paramref name="phase"/>.</summary>
    /// <exception cref="HmmException">EINVAL: not a phase number.</exception>
    public static (string Name, string Description, bool Gpu) PhaseOf(uint phase) =>
        phase >= 1 && phase < s_phases.Length
            ? s_phases[phase]
            : throw new HmmException(Errno.EINVAL, string.Create(CultureInfo.InvariantCulture, $"the trace names phase {phase}, which is not a phase of a simulation run (1 to {s_phases.Length - 1})"));

    /// <summary>Writes the configuration records of a run with <paramref name="options"/> and its buffer at <paramref name="buffer"/>.</summary>
    public static void EmitConfiguration(TraceEmitter trace, SimulationOptions options, ulong deviceBytes, ulong buffer)
    {
        trace.Emit(TraceEvent.RunConfiguration(WorkloadField, (ulong)options.Workload));
        trace.Emit(TraceEvent.RunConfiguration(WorkingSetField, options.WorkingSetBytes));
        trace.Emit(TraceEvent.RunConfiguration(DeviceMemoryField, deviceBytes));
        trace.Emit(TraceEvent.RunConfiguration(BatchSizeField, (ulong)options.BatchSize));
        trace.Emit(TraceEvent.RunConfiguration(DevicesField, (ulong)options.Devices));
        trace.Emit(TraceEvent.RunConfiguration(SeedField, options.Seed));
        trace.Emit(TraceEvent.RunConfiguration(MetadataOnlyField, options.MetadataOnly ? 1UL : 0));
        trace.Emit(TraceEvent.RunConfiguration(EnginesField, (ulong)options.Engines));
        trace.Emit(TraceEvent.RunConfiguration(WarpsPerEngineField, (ulong)options.WarpsPerEngine));
        trace.Emit(TraceEvent.RunConfiguration(BytesPerItemField, (ulong)options.BytesPerItem));
        trace.Emit(TraceEvent.RunConfiguration(IterationsField, (ulong)options.Iterations));
        trace.Emit(TraceEvent.RunConfiguration(BufferAddressField, buffer));
    }

    /// <summary>Rebuilds the recorded options and buffer address from the configuration fields read (indexed by field number).</summary>
    /// <exception cref="HmmException">EINVAL: a field is missing or out of range.</exception>
    public static (SimulationOptions Options, ulong Buffer) ParseConfiguration(ulong?[] fields)
    {
        for (uint field = 1; field < s_fieldNames.Length; field++)
        {
            if (fields[field] is null)
            {
                throw new HmmException(Errno.EINVAL, $"the trace's run configuration has no {s_fieldNames[field]} (field {field}): it was not recorded by this version of Simulation.Run");
            }
        }

        var options = new SimulationOptions
        {
            Workload = (WorkloadKind)Small(fields, WorkloadField),
            WorkingSetBytes = fields[WorkingSetField]!.Value,
            DeviceMemoryBytes = fields[DeviceMemoryField]!.Value,
            BatchSize = Small(fields, BatchSizeField),
            Devices = Small(fields, DevicesField),
            Seed = fields[SeedField]!.Value,
            MetadataOnly = fields[MetadataOnlyField]!.Value != 0,
            Engines = Small(fields, EnginesField),
            WarpsPerEngine = Small(fields, WarpsPerEngineField),
            BytesPerItem = Small(fields, BytesPerItemField),
            Iterations = Small(fields, IterationsField),
        };
        try
        {
            options.Validate();
        }
        catch (HmmException error)
        {
            throw new HmmException(Errno.EINVAL, $"the trace's run configuration is invalid: {error.Message}");
        }

        return (options, fields[BufferAddressField]!.Value);
    }

    /// <summary>The number of configuration fields plus one (field numbers index an array of this size).</summary>
    public static int FieldSlots => s_fieldNames.Length;

    /// <summary>Whether <paramref name="field"/> is a configuration field this version knows.</summary>
    public static bool IsKnownField(uint field) => field >= 1 && field < s_fieldNames.Length;

    // Values that must fit an int; a larger one is clamped to one Validate refuses, so the message names the field.
    private static int Small(ulong?[] fields, uint field) => (int)Math.Min(fields[field]!.Value, int.MaxValue);
}
