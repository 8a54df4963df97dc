using System.Diagnostics.Metrics;
using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// The simulated GPU's instruments, on its own <see cref="Meter"/> named <see cref="HmmMetrics.MeterName"/>
/// (<c>Hmm</c>) like the core's and the drivers', so one <c>AddMeter("Hmm")</c> sees every layer. Counted here: the
/// faults the hardware raises into its fault buffer, and the ones it drops when the buffer is full.
/// </summary>
internal static class SimGpuMetrics
{
    private static readonly Meter s_meter = new(HmmMetrics.MeterName, typeof(SimGpuMetrics).Assembly.GetName().Version?.ToString());

    internal static readonly Counter<long> Faults =
        s_meter.CreateCounter<long>("hmm.device.faults", "{fault}", "Faults a device raised into its fault buffer (duplicates included), by access.");

    internal static readonly Counter<long> FaultsDropped =
        s_meter.CreateCounter<long>("hmm.device.fault.dropped", "{fault}", "Device faults dropped because the fault buffer was full.");

    // Indexed by DeviceAccessKind; static string values, so recording boxes nothing.
    private static readonly KeyValuePair<string, object?>[] s_access =
        [new("hmm.fault.access", "read"), new("hmm.fault.access", "write"), new("hmm.fault.access", "atomic")];

    /// <summary>Counts <paramref name="raised"/> faults of one access kind raised into the buffer (dropped ones included).</summary>
    internal static void RecordFaults(DeviceAccessKind access, long raised)
    {
        if (raised > 0 && Faults.Enabled)
        {
            Faults.Add(raised, s_access[(uint)access < (uint)s_access.Length ? (int)access : 0]);
        }
    }

    /// <summary>Counts <paramref name="dropped"/> faults the buffer had no room for.</summary>
    internal static void RecordDropped(long dropped)
    {
        if (dropped > 0)
        {
            FaultsDropped.Add(dropped);
        }
    }
}
