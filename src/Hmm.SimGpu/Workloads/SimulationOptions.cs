using System.Globalization;

namespace Hmm.SimGpu;

/// <summary>
/// What a <see cref="Simulation"/> runs: the workload, the machine (working set, device memory, devices) and the
/// GPU's execution model (engines, warps, fault batch size). Every value has a default, so
/// <c>new SimulationOptions()</c> is the built-in default run: a 96 MiB STREAM triad on one GPU with 64 MiB of
/// device memory (150% oversubscription).
/// </summary>
/// <remarks>
/// Error model: the properties are plain values; <see cref="Simulation.Run"/> checks them all before it builds
/// anything and throws <see cref="HmmException"/> <see cref="Errno.EINVAL"/> naming the first bad one.
/// </remarks>
public sealed class SimulationOptions
{
    /// <summary>The smallest working set, in bytes (16 pages).</summary>
    public const ulong MinimumWorkingSetBytes = 16 * PageBytes;

    /// <summary>The largest working set, in bytes (256 GiB; metadata-only runs of that size need about 20 GiB of host memory).</summary>
    public const ulong MaximumWorkingSetBytes = 256UL << 30;

    /// <summary>The smallest device memory per device, in bytes (8 chunks of 2 MiB), so that the warps in flight never need more blocks than fit.</summary>
    public const ulong MinimumDeviceMemoryBytes = 8 * ChunkBytes;

    /// <summary>Device memory is handed out in chunks of this many bytes (2 MiB); the device memory size is a multiple of it.</summary>
    public const ulong ChunkBytes = 2UL << 20;

    private const ulong PageBytes = 4096;

    /// <summary>The access pattern of the GPU kernels. Default <see cref="WorkloadKind.Stream"/>.</summary>
    public WorkloadKind Workload { get; init; } = WorkloadKind.Stream;

    /// <summary>
    /// Bytes of the buffer the process allocates and the kernels work on: a multiple of 4 KiB between
    /// <see cref="MinimumWorkingSetBytes"/> and <see cref="MaximumWorkingSetBytes"/>. Default 96 MiB.
    /// </summary>
    public ulong WorkingSetBytes { get; init; } = 96UL << 20;

    /// <summary>
    /// Bytes of memory on each device, a multiple of <see cref="ChunkBytes"/> of at least
    /// <see cref="MinimumDeviceMemoryBytes"/>; null (the default) sizes it so that the working set is 150% of the
    /// memory of all devices together (rounded down to a chunk, never below the minimum).
    /// </summary>
    public ulong? DeviceMemoryBytes { get; init; }

    /// <summary>Most fault records the driver fetches in one batch, 1 to 8192. Default 256 (NVIDIA UVM's batch).</summary>
    public int BatchSize { get; init; } = 256;

    /// <summary>Simulated GPUs sharing the process's buffer, 1 to 16; each works on its own slice of the work items. Default 1.</summary>
    public int Devices { get; init; } = 1;

    /// <summary>Seed of every random choice (the random workload's picks); the same options give the same report. Default 42.</summary>
    public ulong Seed { get; init; } = 42;

    /// <summary>
    /// Whether the machine is metadata-only (pages carry no bytes): copies and accesses are charged on the clock
    /// but move nothing, the CPU touches pages through the fault handler instead of reading bytes, and the data
    /// check is skipped. For timing runs of many GiB. Default false.
    /// </summary>
    public bool MetadataOnly { get; init; }

    /// <summary>Engines (streaming multiprocessors) per device, 1 to 256; each reports its faults under its own number. Default 8.</summary>
    public int Engines { get; init; } = 8;

    /// <summary>
    /// Warps per engine, 1 to 1024. Each warp runs one work item at a time; a warp whose access misses stalls
    /// with its fault in the buffer while the others go on. Default 64 (512 warps per device).
    /// </summary>
    public int WarpsPerEngine { get; init; } = 64;

    /// <summary>
    /// Bytes of a row (an output page) one work item covers, and so one warp access: a power of two from 64 to
    /// 4096. Each access reads or writes that slice of a page (the matching slices of the input pages), so
    /// 4096 / <see cref="BytesPerItem"/> consecutive items, run by neighbouring warps, share their pages and
    /// fault on them together (duplicates the device merges within a batch). Default 512 (8 items per page).
    /// </summary>
    public int BytesPerItem { get; init; } = 512;

    /// <summary>Kernel launches in each GPU phase, 1 to 100 (later launches find the pages that stayed resident). Default 1.</summary>
    public int Iterations { get; init; } = 1;

    /// <summary>The device memory per device this run uses: <see cref="DeviceMemoryBytes"/>, or the size derived from the working set.</summary>
    /// <returns>Bytes, a multiple of <see cref="ChunkBytes"/>.</returns>
    public ulong ResolveDeviceMemoryBytes()
    {
        if (DeviceMemoryBytes is { } explicitBytes)
        {
            return explicitBytes;
        }

        ulong perDevice = WorkingSetBytes * 2 / 3 / (ulong)Math.Max(1, Devices);
        perDevice -= perDevice % ChunkBytes;
        return Math.Max(perDevice, MinimumDeviceMemoryBytes);
    }

    /// <summary>Checks every value (as <see cref="Simulation.Run"/> does first); the error names the first bad one.</summary>
    /// <exception cref="HmmException">Error model: <see cref="Errno.EINVAL"/> for a value out of range.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Workload))
        {
            Fail($"workload {(int)Workload} is not stream, random or stencil");
        }

        if (WorkingSetBytes % PageBytes != 0 || WorkingSetBytes < MinimumWorkingSetBytes || WorkingSetBytes > MaximumWorkingSetBytes)
        {
            Fail($"working set {WorkingSetBytes} bytes must be a multiple of 4 KiB from {MinimumWorkingSetBytes} bytes to {MaximumWorkingSetBytes >> 30} GiB");
        }

        if (DeviceMemoryBytes is { } device && (device % ChunkBytes != 0 || device < MinimumDeviceMemoryBytes || device > MaximumWorkingSetBytes))
        {
            Fail($"device memory {device} bytes must be a multiple of 2 MiB from {MinimumDeviceMemoryBytes >> 20} MiB to {MaximumWorkingSetBytes >> 30} GiB");
        }

        CheckRange(BatchSize, 1, 8192, "batch size");
        CheckRange(Devices, 1, 16, "devices");
        CheckRange(Engines, 1, 256, "engines");
        CheckRange(WarpsPerEngine, 1, 1024, "warps per engine");
        CheckRange(Iterations, 1, 100, "iterations");
        if (BytesPerItem < 64 || BytesPerItem > (int)PageBytes || (BytesPerItem & (BytesPerItem - 1)) != 0)
        {
            Fail($"bytes per item {BytesPerItem} must be a power of two from 64 to 4096");
        }
    }

    private static void CheckRange(int value, int minimum, int maximum, string what)
    {
        if (value < minimum || value > maximum)
        {
            Fail($"{what} {value} must be from {minimum} to {maximum}");
        }
    }

    private static void Fail(FormattableString message) =>
        throw new HmmException(Errno.EINVAL, message.ToString(CultureInfo.InvariantCulture) + ".");
}
