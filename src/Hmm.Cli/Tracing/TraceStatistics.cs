namespace Hmm.Cli.Tracing;

/// <summary>
/// What <c>hmmsim trace stats</c> counts, gathered in one streaming pass: events per kind (kinds this tool does
/// not know count as "other"), the totals of faults, batches, migrations, copies and evictions, and histograms
/// of batch sizes and fault latencies.
/// </summary>
/// <remarks>
/// A device fault's latency is the time from the fault to the end of the batch that serviced it, taken to be the
/// first <see cref="TraceEventKind.FaultBatch"/> of the same device, later in the file, whose start is at or
/// after the fault's time (<see cref="PendingEvents"/>).
/// </remarks>
internal sealed class TraceStatistics : ITraceConsumer
{
    private readonly long[] _kinds = new long[TraceEventFields.KnownKinds];
    private readonly PendingEvents _pendingFaults = new();
    private readonly List<TraceEvent> _taken = [];
    private readonly Dictionary<ushort, long> _peakInUse = [];
    private readonly HashSet<ushort> _devices = [];
    private bool _any;

    public long Events { get; private set; }

    public long OtherEvents { get; private set; }

    public long DeviceFaults => Count(TraceEventKind.DeviceFault);

    public long CpuFaults => Count(TraceEventKind.CpuFault);

    public long Batches => Count(TraceEventKind.FaultBatch);

    public long FaultsDelivered { get; private set; }

    public long DuplicatesMerged { get; private set; }

    public long PagesToDevice { get; private set; }

    public long PagesToHost { get; private set; }

    public long PagesDeviceToDevice { get; private set; }

    public long PagesDeclined { get; private set; }

    public long Evictions => Count(TraceEventKind.Evict);

    public long EvictedPages { get; private set; }

    public long Copies => Count(TraceEventKind.Copy);

    public long CopyBytesToDevice { get; private set; }

    public long CopyBytesToHost { get; private set; }

    public long CopyBytesDeviceToDevice { get; private set; }

    public long RangeFaultRetries { get; private set; }

    public long UnservicedFaults { get; private set; }

    public long FirstNs { get; private set; }

    public long LastNs { get; private set; }

    /// <summary>From the earliest event to the latest end on the virtual clock.</summary>
    public long SimulatedNs => _any ? LastNs - FirstNs : 0;

    public long PeakDevicePagesInUse
    {
        get
        {
            long peak = 0;
            foreach (long pages in _peakInUse.Values)
            {
                peak = Math.Max(peak, pages);
            }

            return peak;
        }
    }

    /// <summary>Devices named by device events (every kind but CPU faults and invalidations).</summary>
    public int Devices => _devices.Count;

    public long BytesToDevice => PagesToDevice * PageSize.Bytes;

    public long BytesToHost => PagesToHost * PageSize.Bytes;

    /// <summary>Faults delivered per batch.</summary>
    public LogHistogram BatchSizes { get; } = new();

    /// <summary>Nanoseconds from a device fault to the end of its batch.</summary>
    public LogHistogram FaultLatencies { get; } = new();

    public long Count(TraceEventKind kind) => TraceEventFields.IsKnown(kind) ? _kinds[(int)kind] : 0;

    public void Add(in TraceEvent traceEvent)
    {
        Events++;
        if (!TraceEventFields.IsKnown(traceEvent.Kind))
        {
            OtherEvents++;
            return;
        }

        _kinds[(int)traceEvent.Kind]++;
        Stamp(traceEvent.VirtualNs);
        if (traceEvent.Kind is not (TraceEventKind.CpuFault or TraceEventKind.Invalidate))
        {
            _devices.Add(traceEvent.Device);
        }

        switch (traceEvent.Kind)
        {
            case TraceEventKind.DeviceFault:
                if (_pendingFaults.Add(in traceEvent, out _))
                {
                    UnservicedFaults++;
                }

                break;

            case TraceEventKind.FaultBatch:
                {
                    (_, ulong faults, ulong duplicates, long endNs) = traceEvent.AsFaultBatch();
                    FaultsDelivered += (long)faults;
                    DuplicatesMerged += (long)duplicates;
                    BatchSizes.Record((long)faults);
                    Stamp(endNs);
                    _taken.Clear();
                    _pendingFaults.TakeUntil(traceEvent.Device, traceEvent.VirtualNs, _taken);
                    foreach (TraceEvent fault in _taken)
                    {
                        FaultLatencies.Record(endNs - fault.VirtualNs);
                    }

                    break;
                }

            case TraceEventKind.RangeFault:
                RangeFaultRetries += (long)traceEvent.AsRangeFault().Retries;
                break;

            case TraceEventKind.MigrateFinalize:
                {
                    (TraceDirection direction, _, ulong moved, ulong declined) = traceEvent.AsMigrateFinalize();
                    PagesDeclined += (long)declined;
                    switch (direction)
                    {
                        case TraceDirection.HostToDevice: PagesToDevice += (long)moved; break;
                        case TraceDirection.DeviceToHost: PagesToHost += (long)moved; break;
                        case TraceDirection.DeviceToDevice: PagesDeviceToDevice += (long)moved; break;
                        default: break;
                    }

                    break;
                }

            case TraceEventKind.Copy:
                {
                    (_, TraceDirection direction, ulong bytes, long endNs) = traceEvent.AsCopy();
                    Stamp(endNs);
                    switch (direction)
                    {
                        case TraceDirection.HostToDevice: CopyBytesToDevice += (long)bytes; break;
                        case TraceDirection.DeviceToHost: CopyBytesToHost += (long)bytes; break;
                        case TraceDirection.DeviceToDevice: CopyBytesDeviceToDevice += (long)bytes; break;
                        default: break;
                    }

                    break;
                }

            case TraceEventKind.Evict:
                EvictedPages += (long)traceEvent.AsEvict().Pages;
                break;

            case TraceEventKind.DeviceAlloc:
                Peak(traceEvent.Device, (long)traceEvent.AsDeviceAlloc().PagesInUse);
                break;

            case TraceEventKind.DeviceFree:
                Peak(traceEvent.Device, (long)traceEvent.AsDeviceFree().PagesInUse);
                break;

            default:
                break;
        }
    }

    /// <summary>Ends the pass: faults no batch serviced are counted as unserviced.</summary>
    public void Complete()
    {
        _taken.Clear();
        _pendingFaults.TakeAll(_taken);
        UnservicedFaults += _taken.Count;
        _taken.Clear();
    }

    private void Stamp(long ns)
    {
        FirstNs = _any ? Math.Min(FirstNs, ns) : ns;
        LastNs = _any ? Math.Max(LastNs, ns) : ns;
        _any = true;
    }

    private void Peak(ushort device, long pagesInUse) =>
        _peakInUse[device] = _peakInUse.TryGetValue(device, out long peak) ? Math.Max(peak, pagesInUse) : pagesInUse;
}
