namespace Hmm.Cli.Tracing;

/// <summary>
/// The series <c>hmmsim trace plot</c> draws, binned over the virtual clock in one streaming pass and in
/// constant memory: <see cref="Bins"/> bins whose width starts at 1 microsecond and doubles (merging bins pairwise)
/// whenever an event falls past the last bin, so a run of any length ends with between 128 and 256 bins in use.
/// </summary>
internal sealed class TraceTimeline : ITraceConsumer
{
    public const int Bins = 256;

    private readonly double[] _deviceFaults = new double[Bins];
    private readonly double[] _cpuFaults = new double[Bins];
    private readonly double[] _bytesToDevice = new double[Bins];
    private readonly double[] _bytesToHost = new double[Bins];

    // Levels (the last value seen in each bin, NaN where none was), per device.
    private readonly SortedDictionary<ushort, double[]> _pagesInUse = [];
    private readonly SortedDictionary<ushort, double[]> _pagesResident = [];
    private readonly Dictionary<ushort, double> _resident = [];
    private int _used;

    /// <summary>The width of a bin on the virtual clock, in nanoseconds.</summary>
    public long BinNs { get; private set; } = 1000;

    /// <summary>Bins that hold the run (the rest are past its end).</summary>
    public int UsedBins => Math.Max(_used, 1);

    public ReadOnlySpan<double> DeviceFaults => _deviceFaults.AsSpan(0, UsedBins);

    public ReadOnlySpan<double> CpuFaults => _cpuFaults.AsSpan(0, UsedBins);

    public ReadOnlySpan<double> BytesToDevice => _bytesToDevice.AsSpan(0, UsedBins);

    public ReadOnlySpan<double> BytesToHost => _bytesToHost.AsSpan(0, UsedBins);

    public IEnumerable<ushort> Devices => _pagesInUse.Keys.Union(_pagesResident.Keys).Order();

    /// <summary>Device pages in use on <paramref name="device"/> at the end of each bin (the level carried over bins without a change; 0 before the first).</summary>
    public double[] PagesInUse(ushort device) => Levels(_pagesInUse, device);

    /// <summary>Pages resident on <paramref name="device"/> (moved there minus moved back) at the end of each bin.</summary>
    public double[] PagesResident(ushort device) => Levels(_pagesResident, device);

    public void Add(in TraceEvent traceEvent)
    {
        switch (traceEvent.Kind)
        {
            case TraceEventKind.DeviceFault:
                _deviceFaults[Bin(traceEvent.VirtualNs)]++;
                break;

            case TraceEventKind.CpuFault:
                _cpuFaults[Bin(traceEvent.VirtualNs)]++;
                break;

            case TraceEventKind.MigrateFinalize:
                {
                    (TraceDirection direction, _, ulong moved, _) = traceEvent.AsMigrateFinalize();
                    int bin = Bin(traceEvent.VirtualNs);
                    double bytes = (double)moved * PageSize.Bytes;
                    double change = direction switch
                    {
                        TraceDirection.HostToDevice => moved,
                        TraceDirection.DeviceToHost => -(double)moved,
                        _ => 0,
                    };
                    if (direction == TraceDirection.HostToDevice)
                    {
                        _bytesToDevice[bin] += bytes;
                    }
                    else if (direction == TraceDirection.DeviceToHost)
                    {
                        _bytesToHost[bin] += bytes;
                    }

                    if (change != 0)
                    {
                        double resident = Math.Max(0, (_resident.TryGetValue(traceEvent.Device, out double pages) ? pages : 0) + change);
                        _resident[traceEvent.Device] = resident;
                        Series(_pagesResident, traceEvent.Device)[bin] = resident;
                    }

                    break;
                }

            case TraceEventKind.DeviceAlloc:
                {
                    int bin = Bin(traceEvent.VirtualNs);
                    Series(_pagesInUse, traceEvent.Device)[bin] = traceEvent.AsDeviceAlloc().PagesInUse;
                    break;
                }

            case TraceEventKind.DeviceFree:
                {
                    int bin = Bin(traceEvent.VirtualNs);
                    Series(_pagesInUse, traceEvent.Device)[bin] = traceEvent.AsDeviceFree().PagesInUse;
                    break;
                }

            default:
                break;
        }
    }

    private int Bin(long ns)
    {
        long at = Math.Max(0, ns);
        while (at / BinNs >= Bins)
        {
            Halve();
        }

        int bin = (int)(at / BinNs);
        _used = Math.Max(_used, bin + 1);
        return bin;
    }

    // Doubles the bin width: bin i becomes the merge of bins 2i and 2i+1 (sums add, levels keep the later value).
    private void Halve()
    {
        foreach (double[] sums in (double[][])[_deviceFaults, _cpuFaults, _bytesToDevice, _bytesToHost])
        {
            for (int i = 0; i < Bins / 2; i++)
            {
                sums[i] = sums[2 * i] + sums[(2 * i) + 1];
            }

            Array.Clear(sums, Bins / 2, Bins / 2);
        }

        foreach (SortedDictionary<ushort, double[]> levels in (SortedDictionary<ushort, double[]>[])[_pagesInUse, _pagesResident])
        {
            foreach (double[] level in levels.Values)
            {
                for (int i = 0; i < Bins / 2; i++)
                {
                    level[i] = double.IsNaN(level[(2 * i) + 1]) ? level[2 * i] : level[(2 * i) + 1];
                }

                Array.Fill(level, double.NaN, Bins / 2, Bins / 2);
            }
        }

        BinNs *= 2;
        _used = (_used + 1) / 2;
    }

    private static double[] Series(SortedDictionary<ushort, double[]> levels, ushort device)
    {
        if (!levels.TryGetValue(device, out double[]? series))
        {
            series = new double[Bins];
            Array.Fill(series, double.NaN);
            levels.Add(device, series);
        }

        return series;
    }

    private double[] Levels(SortedDictionary<ushort, double[]> levels, ushort device)
    {
        var result = new double[UsedBins];
        if (!levels.TryGetValue(device, out double[]? series))
        {
            return result;
        }

        double level = 0;
        for (int i = 0; i < result.Length; i++)
        {
            level = double.IsNaN(series[i]) ? level : series[i];
            result[i] = level;
        }

        return result;
    }
}
