namespace Hmm.SimGpu;

/// <summary>
/// The outcome of a <see cref="Simulation"/> run: the options it ran with, every counter of the summary, the
/// simulated time and the data check. Everything except <see cref="WallTime"/>, <see cref="PagesPerWallSecond"/>
/// and the phases' wall times is a function of the options: the same options give the same values, bit for bit.
/// </summary>
public sealed class SimulationReport
{
    internal SimulationReport(SimulationOptions options, ulong deviceMemoryBytes, IReadOnlyList<SimulationPhaseReport> phases)
    {
        Options = options;
        DeviceMemoryBytes = deviceMemoryBytes;
        Phases = phases;
    }

    /// <summary>The options of the run.</summary>
    public SimulationOptions Options { get; }

    /// <summary>Device memory per device (<see cref="SimulationOptions.ResolveDeviceMemoryBytes"/>).</summary>
    public ulong DeviceMemoryBytes { get; }

    /// <summary>Pages of the buffer.</summary>
    public long WorkingSetPages => (long)(Options.WorkingSetBytes / 4096);

    /// <summary>Working set over the memory of all devices: above 1 the run oversubscribes device memory.</summary>
    public double Oversubscription => (double)Options.WorkingSetBytes / (DeviceMemoryBytes * (ulong)Options.Devices);

    /// <summary>The phases, in the order they ran.</summary>
    public IReadOnlyList<SimulationPhaseReport> Phases { get; }

    /// <summary>Distinct buffer pages the GPU kernels touched.</summary>
    public long PagesTouched { get; internal set; }

    /// <summary>Fault records the devices' engines raised (before duplicates were merged).</summary>
    public long DeviceFaults { get; internal set; }

    /// <summary>Fault batches the drivers serviced.</summary>
    public long FaultBatches { get; internal set; }

    /// <summary>Fault records merged into another record of the same batch (same page, same access).</summary>
    public long DuplicatesMerged { get; internal set; }

    /// <summary>CPU faults on device pages, each serviced by the driver's <c>migrate_to_ram</c>.</summary>
    public long CpuFaults { get; internal set; }

    /// <summary>Pages migrated from System RAM to device memory.</summary>
    public long PagesToDevice { get; internal set; }

    /// <summary>Bytes migrated from System RAM to device memory.</summary>
    public long BytesToDevice { get; internal set; }

    /// <summary>Pages migrated from device memory to System RAM (evictions and CPU faults).</summary>
    public long PagesToRam { get; internal set; }

    /// <summary>Bytes migrated from device memory to System RAM.</summary>
    public long BytesToRam { get; internal set; }

    /// <summary>Device memory blocks (2 MiB chunks) evicted to make room.</summary>
    public long EvictedBlocks { get; internal set; }

    /// <summary>Pages evicted from device memory to System RAM to make room.</summary>
    public long EvictedPages { get; internal set; }

    /// <summary>Virtual nanoseconds from the first phase to the last.</summary>
    public long SimulatedNanoseconds { get; internal set; }

    /// <summary>Bytes migrated in both directions per simulated second (0 when no simulated time passed).</summary>
    public double EffectiveBandwidth => SimulatedNanoseconds == 0 ? 0 : (BytesToDevice + BytesToRam) * 1e9 / SimulatedNanoseconds;

    /// <summary>The data check: <see cref="DataCheckResult.Skipped"/> on a metadata-only machine.</summary>
    public DataCheckResult DataCheck { get; internal set; }

    /// <summary>Output pages the CPU read back and compared.</summary>
    public long PagesChecked { get; internal set; }

    /// <summary>Output pages that did not hold the expected values.</summary>
    public long DataErrors { get; internal set; }

    /// <summary>
    /// Recorded access events (device and CPU) a <see cref="Simulation.Replay"/> fed to the machine; 0 for a
    /// <see cref="Simulation.Run"/>. Replays of one trace under any configuration feed the same number.
    /// </summary>
    public long AccessesReplayed { get; internal set; }

    /// <summary>Wall-clock time of the phases (setup and teardown excluded).</summary>
    public TimeSpan WallTime { get; internal set; }

    /// <summary>Pages migrated in both directions per second of wall time: how fast the simulator runs.</summary>
    public double PagesPerWallSecond => WallTime <= TimeSpan.Zero ? 0 : (PagesToDevice + PagesToRam) / WallTime.TotalSeconds;
}
