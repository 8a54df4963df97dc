using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// What the simulated GPU's work costs on the virtual clock, in nanoseconds and bytes per second. Every parameter
/// is settable (<c>with</c> or an initializer); the defaults reproduce UVMSmart (GPGPU-Sim with unified memory,
/// GTX 1080 Ti configuration), and where UVMSmart has no figure the default is a stated assumption.
/// </summary>
/// <remarks>
/// <para>Copies between System RAM and the device follow UVMSmart's fitted PCIe curve: a transfer of
/// <c>s</c> KiB runs at <c>BW(s) = (2a/π)·atan(b·s)</c> bytes per second, with <c>a</c> =
/// <see cref="PcieBandwidth"/> and <c>b</c> = <see cref="PcieCurveSlope"/>: about 2.2 GB/s at 4 KiB, 10.4 GB/s at
/// 64 KiB and 12 GB/s at 2 MiB. A transfer is a run of consecutive source and destination frames, so a driver that
/// migrates whole 2 MiB chunks gets the high end of the curve.</para>
/// <para>Error model: the <see cref="SimulatedGpu"/> constructor checks the parameters (a negative latency, a
/// bandwidth or slope that is not positive and finite gives <see cref="HmmException"/> EINVAL).</para>
/// <para>Concurrency model: immutable.</para>
/// </remarks>
public sealed record SimGpuCostModel
{
    private const double NanosecondsPerSecond = 1e9;

    /// <summary>
    /// Servicing one fault batch end to end (interrupt, fetch, host handling, replay), charged by the driver once per
    /// serviced batch. Default 45 000 ns: UVMSmart's far-fault latency, 66 645 core cycles at 1481 MHz
    /// (<c>configs/GeForceGTX1080Ti/gpgpusim.config</c>), within the 20–50 µs usually cited for far faults.
    /// </summary>
    public long FarFaultLatency { get; init; } = 45_000;

    /// <summary>
    /// A CPU fault on a device page before its copy back (host fault entry, driver lookup, migrate_to_ram set-up),
    /// charged by the driver. Default 20 000 ns: an assumption (UVMSmart does not model the CPU side), the low end of
    /// the cited far-fault range, since the host services it without a device round trip.
    /// </summary>
    public long CpuFaultLatency { get; init; } = 20_000;

    /// <summary>
    /// One device TLB invalidation (<see cref="IDeviceAddressSpace.InvalidateTlb"/>), charged by the device.
    /// Default 2 000 ns: an assumption (a TLB shootdown of a few microseconds; UVMSmart folds it into the far-fault latency).
    /// </summary>
    public long TlbInvalidateLatency { get; init; } = 2_000;

    /// <summary>
    /// One replay (<see cref="IFaultSource.Replay"/>), charged by the device. Default 0: UVMSmart's far-fault latency
    /// already includes the replay, so a non-zero default would count it twice.
    /// </summary>
    public long ReplayLatency { get; init; }

    /// <summary>
    /// The <c>a</c> of the PCIe curve, in bytes per second: the bandwidth large transfers approach. Default 12e9:
    /// UVMSmart's fit for a 16 GB/s (PCIe 3.0 x16) link (<c>gpu-sim.cc</c>, <c>calculate_transfer_time</c>; 24e9 or
    /// 48e9 model 32 or 64 GB/s links).
    /// </summary>
    public double PcieBandwidth { get; init; } = 12e9;

    /// <summary>The <c>b</c> of the PCIe curve, per KiB of transfer. Default 0.07292: UVMSmart's fit.</summary>
    public double PcieCurveSlope { get; init; } = 0.07292;

    /// <summary>
    /// The <c>a</c> of the curve for copies between two devices (peer to peer), in bytes per second. Default 12e9:
    /// an assumption, peers talking over the same PCIe fabric as the host (UVMSmart models one GPU).
    /// </summary>
    public double PeerBandwidth { get; init; } = 12e9;

    /// <summary>
    /// The device's own memory bandwidth, in bytes per second, for accesses to its own pages and copies within it
    /// (which read and write it, so they cost twice the bytes). Default 484e9: the GTX 1080 Ti's GDDR5X, the GPU of
    /// UVMSmart's configuration.
    /// </summary>
    public double LocalMemoryBandwidth { get; init; } = 484e9;

    /// <summary>
    /// Bandwidth of device accesses to pages it does not own (System RAM, another device's memory) through its page
    /// table, in bytes per second. Default 12e9: the PCIe curve's <c>a</c>, its sustained rate.
    /// </summary>
    public double RemoteAccessBandwidth { get; init; } = 12e9;

    /// <summary>
    /// How long one transfer of <paramref name="transferBytes"/> between System RAM and the device takes on the
    /// PCIe curve: <c>ceil(bytes / BW(bytes / 1024) · 1e9)</c> ns. A 4 KiB transfer takes about 1 890 ns; a 2 MiB one about 175 µs.
    /// </summary>
    /// <param name="transferBytes">Bytes in one contiguous transfer, 0 or more.</param>
    /// <returns>Virtual nanoseconds; 0 for 0 bytes.</returns>
    /// <exception cref="HmmException">EINVAL for a negative size.</exception>
    public long CopyTime(long transferBytes) => CurveTime(transferBytes, PcieBandwidth);

    /// <summary>A transfer between two devices on the peer curve (<see cref="PeerBandwidth"/>, same shape as <see cref="CopyTime"/>).</summary>
    internal long PeerCopyTime(long transferBytes) => CurveTime(transferBytes, PeerBandwidth);

    /// <summary>A copy within one device's memory: read and write at <see cref="LocalMemoryBandwidth"/>.</summary>
    internal long LocalCopyTime(long transferBytes) => LinearTime(2 * transferBytes, LocalMemoryBandwidth);

    /// <summary>Device accesses: local bytes at <see cref="LocalMemoryBandwidth"/>, remote bytes at <see cref="RemoteAccessBandwidth"/>.</summary>
    internal long AccessTime(long localBytes, long remoteBytes) =>
        LinearTime(localBytes, LocalMemoryBandwidth) + LinearTime(remoteBytes, RemoteAccessBandwidth);

    /// <summary>Throws EINVAL when a parameter is out of range; used by the <see cref="SimulatedGpu"/> constructor.</summary>
    internal void Validate()
    {
        if (FarFaultLatency < 0 || CpuFaultLatency < 0 || TlbInvalidateLatency < 0 || ReplayLatency < 0)
        {
            throw new HmmException(Errno.EINVAL, "Cost model latencies must not be negative.");
        }

        if (!IsPositiveFinite(PcieBandwidth) || !IsPositiveFinite(PcieCurveSlope) || !IsPositiveFinite(PeerBandwidth)
            || !IsPositiveFinite(LocalMemoryBandwidth) || !IsPositiveFinite(RemoteAccessBandwidth))
        {
            throw new HmmException(Errno.EINVAL, "Cost model bandwidths and the PCIe curve slope must be positive and finite.");
        }
    }

    private static bool IsPositiveFinite(double value) => double.IsFinite(value) && value > 0;

    private long CurveTime(long transferBytes, double peak)
    {
        if (transferBytes < 0)
        {
            throw new HmmException(Errno.EINVAL, $"A transfer of {transferBytes} bytes is negative.");
        }

        if (transferBytes == 0)
        {
            return 0;
        }

        double bandwidth = 2 * peak / Math.PI * Math.Atan(PcieCurveSlope * (transferBytes / 1024.0));
        return (long)Math.Ceiling(transferBytes / bandwidth * NanosecondsPerSecond);
    }

    private static long LinearTime(long bytes, double bandwidth) =>
        bytes == 0 ? 0 : (long)Math.Ceiling(bytes / bandwidth * NanosecondsPerSecond);
}
