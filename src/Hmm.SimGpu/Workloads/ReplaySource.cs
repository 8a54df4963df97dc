using System.Globalization;

namespace Hmm.SimGpu;

/// <summary>
/// The recorded run a replay feeds to the machine, streamed from a trace through a <see cref="TraceReader"/> a
/// batch of records at a time. Records of other kinds (the layers' events) are skipped. The run's CPU accesses,
/// phases and launches are consumed in file order; each device's work items are consumed in file order too, from
/// a queue per device: with the recorded configuration the replay deals items in the order they were recorded,
/// so the queues stay empty, and with another one a device that runs ahead of the recording's interleaving
/// reads past the other devices' items, which wait in their queues.
/// </summary>
internal sealed class ReplaySource
{
    private const int BatchRecords = 4096;

    /// <summary>The most accesses a replayed work item may have (the workloads issue at most four).</summary>
    public const int MaxAccessesPerItem = 8;

    private readonly TraceReader _reader;
    private readonly CancellationToken _cancellationToken;
    private readonly TraceEvent[] _batch = new TraceEvent[BatchRecords];
    private readonly Queue<TraceEvent> _control = new();
    private Queue<TraceEvent>[] _items = [];
    private int _next;
    private int _count;
    private bool _ended;

    public ReplaySource(TraceReader reader, CancellationToken cancellationToken)
    {
        _reader = reader;
        _cancellationToken = cancellationToken;
    }

    /// <summary>The address of the recorded run's buffer; the replay moves recorded addresses to its own buffer.</summary>
    public ulong RecordedBuffer { get; private set; }

    /// <summary>Access events (device and CPU) handed to the replay so far.</summary>
    public long AccessesReplayed { get; private set; }

    /// <summary>
    /// Reads the run's configuration: the <see cref="TraceEventKind.RunConfiguration"/> records before its first
    /// phase, which stays queued.
    /// </summary>
    /// <exception cref="HmmException">EINVAL: the trace holds no configuration or an incomplete one.</exception>
    /// <exception cref="TraceFormatException">The trace is corrupted.</exception>
    public (SimulationOptions Options, ulong Buffer) ReadConfiguration()
    {
        var fields = new ulong?[RunRecording.FieldSlots];
        bool any = false;
        while (TryRead(out TraceEvent record))
        {
            if (record.Kind != TraceEventKind.RunConfiguration)
            {
                _control.Enqueue(record);
                break;
            }

            (uint field, ulong value) = record.AsRunConfiguration();
            if (!RunRecording.IsKnownField(field))
            {
                throw new HmmException(Errno.EINVAL, string.Create(CultureInfo.InvariantCulture, $"the trace's run configuration has field {field}, which this version does not know"));
            }

            fields[field] = value;
            any = true;
        }

        if (!any)
        {
            throw new HmmException(Errno.EINVAL,
                "the trace holds no run configuration (RunConfiguration records, kind 15) and no access stream: it was not recorded by Simulation.Run (hmmsim --trace) of this version, so it cannot be replayed");
        }

        (SimulationOptions options, ulong buffer) = RunRecording.ParseConfiguration(fields);
        RecordedBuffer = buffer;
        _items = new Queue<TraceEvent>[options.Devices];
        for (int d = 0; d < _items.Length; d++)
        {
            _items[d] = new Queue<TraceEvent>();
        }

        return (options, buffer);
    }

    /// <summary>The kind of the next phase, launch or CPU access record, or <see cref="TraceEventKind.None"/> at the end of the trace.</summary>
    public TraceEventKind PeekControl()
    {
        while (_control.Count == 0)
        {
            if (!TryRead(out TraceEvent record))
            {
                return TraceEventKind.None;
            }

            Route(record);
        }

        return _control.Peek().Kind;
    }

    /// <summary>Takes the record <see cref="PeekControl"/> announced.</summary>
    public TraceEvent TakeControl()
    {
        TraceEvent record = _control.Dequeue();
        if (record.Kind == TraceEventKind.CpuAccess)
        {
            AccessesReplayed++;
        }

        return record;
    }

    /// <summary>Copies the next work item of <paramref name="device"/> (its accesses, in order) into <paramref name="accesses"/>.</summary>
    /// <returns>The number of accesses.</returns>
    /// <exception cref="HmmException">EINVAL: the trace has no further item for the device in this launch, or an item of too many accesses.</exception>
    public int NextItem(int device, Span<TraceEvent> accesses)
    {
        Queue<TraceEvent> queue = _items[device];
        int count = 0;
        while (true)
        {
            while (queue.Count == 0)
            {
                if (!TryRead(out TraceEvent record))
                {
                    throw Inconsistent($"the trace ends inside a kernel launch on device {device}: it holds fewer work items than the launch's rows");
                }

                if (record.Kind is TraceEventKind.Phase or TraceEventKind.KernelLaunch)
                {
                    throw Inconsistent($"a kernel launch on device {device} ends before the work items of its rows do");
                }

                Route(record);
            }

            TraceEvent access = queue.Dequeue();
            if (count == accesses.Length)
            {
                throw Inconsistent($"a work item on device {device} has more than {accesses.Length} accesses");
            }

            accesses[count++] = access;
            AccessesReplayed++;
            if (access.AsDeviceAccess().EndsItem)
            {
                return count;
            }
        }
    }

    /// <summary>Whether any device still has work items queued (after a launch, none may).</summary>
    public int DeviceWithItemsLeft()
    {
        for (int d = 0; d < _items.Length; d++)
        {
            if (_items[d].Count > 0)
            {
                return d;
            }
        }

        return -1;
    }

    /// <summary>An error for a trace whose replay records do not fit together.</summary>
    public static HmmException Inconsistent(string reason) => new(Errno.EINVAL, "the trace cannot be replayed: " + reason);

    private void Route(in TraceEvent record)
    {
        switch (record.Kind)
        {
            case TraceEventKind.DeviceAccess:
                if (record.Device >= _items.Length)
                {
                    throw Inconsistent(string.Create(CultureInfo.InvariantCulture, $"an access names device {record.Device}, but the run had {_items.Length}"));
                }

                _items[record.Device].Enqueue(record);
                break;
            case TraceEventKind.RunConfiguration:
                throw Inconsistent("a run configuration record follows the run's first phase");
            default:
                _control.Enqueue(record);
                break;
        }
    }

    // The next record of a replay kind, or false at the end of the trace.
    private bool TryRead(out TraceEvent record)
    {
        while (true)
        {
            while (_next < _count)
            {
                record = _batch[_next++];
                if (record.Kind >= TraceEventKind.RunConfiguration)
                {
                    return true;
                }
            }

            if (_ended || !Fill())
            {
                record = default;
                return false;
            }
        }
    }

    private bool Fill()
    {
        _cancellationToken.ThrowIfCancellationRequested();
        ValueTask<int> read = _reader.ReadAsync(_batch, _cancellationToken);

        // The simulation is synchronous; a file or memory stream usually completes the read at once.
        _count = read.IsCompletedSuccessfully ? read.Result : read.AsTask().GetAwaiter().GetResult();
        _next = 0;
        _ended = _count == 0;
        return !_ended;
    }
}
