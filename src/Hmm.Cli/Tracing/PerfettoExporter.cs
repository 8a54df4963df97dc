using System.Buffers.Text;
using System.Globalization;
using System.Text.Json;

namespace Hmm.Cli.Tracing;

/// <summary>
/// Writes a trace as Chrome trace-event JSON (the format ui.perfetto.dev and chrome://tracing open), streaming
/// through a <see cref="Utf8JsonWriter"/>: memory stays bounded whatever the trace's length.
/// </summary>
/// <remarks>
/// <para><b>Tracks.</b> Process 1 ("CPU") has one thread track per emitting managed thread; each device N is
/// process N + 2 ("gpuN") with a track per engine: fault unit, compute and one per copy engine. Metadata events
/// name each process and track when it first appears.</para>
/// <para><b>Events.</b> Timestamps are the virtual clock in microseconds. Fault batches and copies are complete
/// ("X") events over their start and end; device faults and <c>migrate_vma_setup</c> calls are 1 ns complete
/// events (so that a flow can bind to them: Perfetto binds a flow event to the slice open on its track, and an
/// instant is closed as soon as it opens), ending at the fault's time and starting at the migration's; every other known kind is a
/// thread-scoped instant. Arguments are the decoded payload, addresses in hexadecimal.</para>
/// <para><b>Counters.</b> Per device, "memory in use" (device pages allocated, from the allocation and free events)
/// and "pages resident" (pages moved to the device minus pages moved back, from <c>migrate_vma_finalize</c>).</para>
/// <para><b>Flows.</b> A device fault is linked to the first fault batch of its device, later in the file, that
/// starts at or after the fault; a batch is linked to each <c>migrate_vma_setup</c> of its device whose time falls
/// within the batch's start and end. Faults and migrations wait (at most <see cref="PendingEvents.Capacity"/> per
/// device) until their batch is read, then are written with their flow right after them, so the flow binds to
/// them; what no batch claims is written unlinked.</para>
/// <para>The access-stream kinds (record and replay) are not drawn: they are skipped and counted in <see cref="Skipped"/>.</para>
/// </remarks>
internal sealed class PerfettoExporter : ITraceConsumer, IDisposable
{
    private const int CpuPid = 1;
    private const int FaultUnitTid = 1;
    private const int ComputeTid = 2;
    private const int CopyEngineTid = 10;
    private const int FlushBytes = 64 * 1024;
    private const string FlowCategory = "hmm.flow";
    private const string FaultToBatch = "fault to batch";
    private const string BatchToMigration = "batch to migration";

    private readonly Utf8JsonWriter _json;
    private readonly ArgsSink _args;
    private readonly HashSet<int> _processes = [];
    private readonly HashSet<(int Pid, int Tid)> _tracks = [];
    private readonly PendingEvents _pendingFaults = new();
    private readonly PendingEvents _pendingMigrations = new();
    private readonly Dictionary<ushort, (long Start, long End)> _lastBatch = [];
    private readonly Dictionary<ushort, long> _resident = [];
    private readonly List<TraceEvent> _taken = [];
    private readonly List<long> _flowIds = [];
    private readonly Dictionary<ushort, string> _deviceNames = [];
    private readonly Dictionary<(ushort, string), string> _counterNames = [];
    private long _nextFlowId = 1;

    public PerfettoExporter(Stream output)
    {
        _json = new Utf8JsonWriter(output, new JsonWriterOptions { SkipValidation = true });
        _args = new ArgsSink(_json);
        _json.WriteStartObject();
        _json.WriteStartArray("traceEvents");
        EnsureProcess(CpuPid, "CPU");
    }

    /// <summary>Trace events written (metadata, slices, instants, counters and flow events).</summary>
    public long Written { get; private set; }

    /// <summary>Events not drawn (the recorded access stream), left out.</summary>
    public long Skipped { get; private set; }

    public long FaultFlows { get; private set; }

    public long MigrationFlows { get; private set; }

    public void Add(in TraceEvent traceEvent)
    {
        if (!TraceEventFields.IsTimelineKind(traceEvent.Kind))
        {
            Skipped++;
            return;
        }

        switch (traceEvent.Kind)
        {
            case TraceEventKind.DeviceFault:
                if (_pendingFaults.Add(in traceEvent, out TraceEvent unlinkedFault))
                {
                    WriteFault(in unlinkedFault, flowId: 0);
                }

                break;

            case TraceEventKind.MigrateSetup:
                AddMigration(in traceEvent);
                break;

            case TraceEventKind.FaultBatch:
                WriteBatch(in traceEvent);
                break;

            case TraceEventKind.Copy:
                WriteComplete(in traceEvent, traceEvent.AsCopy().EndNs);
                break;

            case TraceEventKind.DeviceAlloc:
                WriteInstant(in traceEvent);
                WriteCounter(traceEvent.Device, traceEvent.VirtualNs, "memory in use", (long)traceEvent.AsDeviceAlloc().PagesInUse);
                break;

            case TraceEventKind.DeviceFree:
                WriteInstant(in traceEvent);
                WriteCounter(traceEvent.Device, traceEvent.VirtualNs, "memory in use", (long)traceEvent.AsDeviceFree().PagesInUse);
                break;

            case TraceEventKind.MigrateFinalize:
                {
                    WriteInstant(in traceEvent);
                    (TraceDirection direction, _, ulong moved, _) = traceEvent.AsMigrateFinalize();
                    long delta = direction switch
                    {
                        TraceDirection.HostToDevice => (long)moved,
                        TraceDirection.DeviceToHost => -(long)moved,
                        _ => 0,
                    };
                    if (delta != 0)
                    {
                        long resident = Math.Max(0, (_resident.TryGetValue(traceEvent.Device, out long pages) ? pages : 0) + delta);
                        _resident[traceEvent.Device] = resident;
                        WriteCounter(traceEvent.Device, traceEvent.VirtualNs, "pages resident", resident);
                    }

                    break;
                }

            default:
                WriteInstant(in traceEvent);
                break;
        }

        // Utf8JsonWriter buffers until flushed: flush often so memory stays bounded.
        if (_json.BytesPending >= FlushBytes)
        {
            _json.Flush();
        }
    }

    /// <summary>Writes what is still waiting (unlinked), the trailer, and flushes.</summary>
    public void Complete(TraceHeader header, long events)
    {
        _taken.Clear();
        _pendingFaults.TakeAll(_taken);
        foreach (TraceEvent fault in _taken)
        {
            WriteFault(in fault, flowId: 0);
        }

        _taken.Clear();
        _pendingMigrations.TakeAll(_taken);
        foreach (TraceEvent migration in _taken)
        {
            WriteMigration(in migration, flowId: 0);
        }

        _json.WriteEndArray();
        _json.WriteStartObject("otherData");
        _json.WriteString("source", "hmmsim trace export");
        _json.WriteNumber("traceFormatVersion", header.FormatVersion);
        _json.WriteString("traceStartTime", header.StartTime.ToString("O", CultureInfo.InvariantCulture));
        _json.WriteNumber("traceEvents", events);
        _json.WriteNumber("skippedEvents", Skipped);
        _json.WriteString("clock", "virtual (simulated) time; ts and dur in microseconds");
        _json.WriteEndObject();
        _json.WriteEndObject();
        _json.Flush();
    }

    /// <summary>Releases the JSON writer (the output stream stays open: the caller owns it).</summary>
    public void Dispose() => _json.Dispose();

    private void AddMigration(in TraceEvent migration)
    {
        if (_lastBatch.TryGetValue(migration.Device, out (long Start, long End) batch) && migration.VirtualNs <= batch.End)
        {
            // The batch was read before the migration: link it now if it falls in the batch's window.
            long flowId = migration.VirtualNs >= batch.Start ? StartFlow(migration.Device, batch.Start, BatchToMigration) : 0;
            WriteMigration(in migration, flowId);
            return;
        }

        if (_pendingMigrations.Add(in migration, out TraceEvent unlinked))
        {
            WriteMigration(in unlinked, flowId: 0);
        }
    }

    private void WriteBatch(in TraceEvent batch)
    {
        long start = batch.VirtualNs;
        long end = batch.AsFaultBatch().EndNs;
        WriteComplete(in batch, end);

        // The flows' ends and starts on the batch's track come right after the batch, so they bind to it.
        _taken.Clear();
        _pendingFaults.TakeUntil(batch.Device, start, _taken);
        _flowIds.Clear();
        foreach (TraceEvent _ in _taken)
        {
            long flowId = _nextFlowId++;
            _flowIds.Add(flowId);
            WriteFlow('f', flowId, FaultToBatch, DevicePid(batch.Device), FaultUnitTid, start);
            FaultFlows++;
        }

        for (int i = 0; i < _taken.Count; i++)
        {
            WriteFault(_taken[i], _flowIds[i]);
        }

        _taken.Clear();
        _pendingMigrations.TakeUntil(batch.Device, end, _taken);
        foreach (TraceEvent migration in _taken)
        {
            long flowId = migration.VirtualNs >= start ? StartFlow(batch.Device, start, BatchToMigration) : 0;
            WriteMigration(in migration, flowId);
        }

        _lastBatch[batch.Device] = (start, end);
    }

    private long StartFlow(ushort device, long batchStart, string name)
    {
        long flowId = _nextFlowId++;
        WriteFlow('s', flowId, name, DevicePid(device), FaultUnitTid, batchStart);
        MigrationFlows++;
        return flowId;
    }

    // A fault is a 1 ns slice ending at the fault's time (0 ns at time 0), so a fault at a batch's very start
    // closes before the batch opens instead of enclosing it.
    private void WriteFault(in TraceEvent fault, long flowId)
    {
        (int pid, int tid) = Track(in fault);
        long start = Math.Max(0, fault.VirtualNs - 1);
        WriteEventStart('X', in fault, pid, tid, start);
        WriteMicroseconds("dur", fault.VirtualNs - start);
        WriteArgs(in fault);
        _json.WriteEndObject();
        Written++;
        if (flowId != 0)
        {
            WriteFlow('s', flowId, FaultToBatch, pid, tid, start);
        }
    }

    private void WriteMigration(in TraceEvent migration, long flowId)
    {
        (int pid, int tid) = Track(in migration);
        WriteEventStart('X', in migration, pid, tid, migration.VirtualNs);
        WriteMicroseconds("dur", 1);
        WriteArgs(in migration);
        _json.WriteEndObject();
        Written++;
        if (flowId != 0)
        {
            WriteFlow('f', flowId, BatchToMigration, pid, tid, migration.VirtualNs);
        }
    }

    private void WriteComplete(in TraceEvent traceEvent, long endNs)
    {
        (int pid, int tid) = Track(in traceEvent);
        WriteEventStart('X', in traceEvent, pid, tid, traceEvent.VirtualNs);
        WriteMicroseconds("dur", Math.Max(0, endNs - traceEvent.VirtualNs));
        WriteArgs(in traceEvent);
        _json.WriteEndObject();
        Written++;
    }

    private void WriteInstant(in TraceEvent traceEvent)
    {
        (int pid, int tid) = Track(in traceEvent);
        WriteEventStart('i', in traceEvent, pid, tid, traceEvent.VirtualNs);
        _json.WriteString("s", "t");
        WriteArgs(in traceEvent);
        _json.WriteEndObject();
        Written++;
    }

    private void WriteEventStart(char phase, in TraceEvent traceEvent, int pid, int tid, long ns)
    {
        _json.WriteStartObject();
        _json.WriteString("name", TraceEventFields.TimelineName(in traceEvent));
        _json.WriteString("cat", TraceEventFields.KindName(traceEvent.Kind));
        WritePhase(phase);
        _json.WriteNumber("pid", pid);
        _json.WriteNumber("tid", tid);
        WriteMicroseconds("ts", ns);
    }

    private void WriteArgs(in TraceEvent traceEvent)
    {
        _json.WriteStartObject("args");
        if (traceEvent.Engine == TraceEngine.Cpu && traceEvent.Kind is not (TraceEventKind.CpuFault or TraceEventKind.Invalidate))
        {
            _json.WriteNumber("device", traceEvent.Device);
        }

        _json.WriteNumber("virtual_ns", traceEvent.VirtualNs);
        _json.WriteNumber("sequence", traceEvent.Sequence);
        TraceEventFields.Describe(in traceEvent, _args);
        _json.WriteEndObject();
    }

    private void WriteFlow(char phase, long id, string name, int pid, int tid, long ns)
    {
        _json.WriteStartObject();
        _json.WriteString("name", name);
        _json.WriteString("cat", FlowCategory);
        WritePhase(phase);
        _json.WriteNumber("id", id);
        _json.WriteNumber("pid", pid);
        _json.WriteNumber("tid", tid);
        WriteMicroseconds("ts", ns);
        if (phase == 'f')
        {
            _json.WriteString("bp", "e");
        }

        _json.WriteEndObject();
        Written++;
    }

    private void WriteCounter(ushort device, long ns, string name, long pages)
    {
        int pid = DevicePid(device);
        EnsureProcess(pid, DeviceName(device));
        _json.WriteStartObject();
        if (!_counterNames.TryGetValue((device, name), out string? counter))
        {
            counter = string.Concat(DeviceName(device), " ", name);
            _counterNames.Add((device, name), counter);
        }

        _json.WriteString("name", counter);
        WritePhase('C');
        _json.WriteNumber("pid", pid);
        WriteMicroseconds("ts", ns);
        _json.WriteStartObject("args");
        _json.WriteNumber("pages", pages);
        _json.WriteEndObject();
        _json.WriteEndObject();
        Written++;
    }

    // Writes nanoseconds as exact decimal microseconds ("1.023"): Perfetto reads the digits of ts exactly,
    // where a double (1023 / 1000.0) could round a nanosecond away and reorder events that touch.
    private void WriteMicroseconds(string name, long ns)
    {
        Span<byte> text = stackalloc byte[24];
        int length = 0;
        if (ns < 0)
        {
            text[length++] = (byte)'-';
        }

        ulong magnitude = ns < 0 ? (ulong)(-(ns + 1)) + 1 : (ulong)ns;
        Utf8Formatter.TryFormat(magnitude / 1000, text[length..], out int written);
        length += written;
        ulong fraction = magnitude % 1000;
        if (fraction != 0)
        {
            text[length++] = (byte)'.';
            text[length++] = (byte)('0' + (fraction / 100));
            text[length++] = (byte)('0' + (fraction / 10 % 10));
            text[length++] = (byte)('0' + (fraction % 10));
        }

        _json.WritePropertyName(name);
        _json.WriteRawValue(text[..length], skipInputValidation: true);
    }

    private void WritePhase(char phase)
    {
        Span<char> text = [phase];
        _json.WriteString("ph", text);
    }

    // The track an event belongs on, named (metadata written) the first time it is used.
    private (int Pid, int Tid) Track(in TraceEvent traceEvent)
    {
        if (traceEvent.Engine == TraceEngine.Cpu)
        {
            if (_tracks.Add((CpuPid, traceEvent.ThreadId)))
            {
                WriteMetadata("thread_name", CpuPid, traceEvent.ThreadId, string.Create(CultureInfo.InvariantCulture, $"CPU thread {traceEvent.ThreadId}"));
            }

            return (CpuPid, traceEvent.ThreadId);
        }

        ushort device = traceEvent.Device;
        int pid = DevicePid(device);
        uint copyEngine = traceEvent.Kind == TraceEventKind.Copy ? Math.Min(traceEvent.AsCopy().Engine, 1000) : 0;
        int tid = traceEvent.Engine switch
        {
            TraceEngine.FaultUnit => FaultUnitTid,
            TraceEngine.Compute => ComputeTid,
            _ => CopyEngineTid + (int)copyEngine,
        };
        if (_tracks.Add((pid, tid)))
        {
            string engine = traceEvent.Engine switch
            {
                TraceEngine.FaultUnit => "fault unit",
                TraceEngine.Compute => "compute",
                _ when copyEngine > 0 => string.Create(CultureInfo.InvariantCulture, $"copy engine {copyEngine}"),
                _ => "copy engine",
            };
            EnsureProcess(pid, DeviceName(device));
            WriteMetadata("thread_name", pid, tid, string.Concat(DeviceName(device), " ", engine));
        }

        return (pid, tid);
    }

    private void EnsureProcess(int pid, string name)
    {
        if (_processes.Add(pid))
        {
            WriteMetadata("process_name", pid, 0, name);
        }
    }

    private void WriteMetadata(string kind, int pid, int tid, string name)
    {
        _json.WriteStartObject();
        _json.WriteString("name", kind);
        WritePhase('M');
        _json.WriteNumber("pid", pid);
        _json.WriteNumber("tid", tid);
        _json.WriteStartObject("args");
        _json.WriteString("name", name);
        _json.WriteEndObject();
        _json.WriteEndObject();
        Written++;
    }

    private static int DevicePid(ushort device) => device + 2;

    private string DeviceName(ushort device)
    {
        if (!_deviceNames.TryGetValue(device, out string? name))
        {
            name = string.Create(CultureInfo.InvariantCulture, $"gpu{device}");
            _deviceNames.Add(device, name);
        }

        return name;
    }

    private sealed class ArgsSink(Utf8JsonWriter json) : ITraceFieldSink
    {
        public void Hex(string name, ulong value)
        {
            Span<char> text = stackalloc char[18];
            text[0] = '0';
            text[1] = 'x';
            value.TryFormat(text[2..], out int written, "x", CultureInfo.InvariantCulture);
            json.WriteString(name, text[..(written + 2)]);
        }

        public void Number(string name, long value) => json.WriteNumber(name, value);

        public void Text(string name, string value) => json.WriteString(name, value);
    }
}
