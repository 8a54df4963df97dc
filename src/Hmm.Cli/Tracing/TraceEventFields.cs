namespace Hmm.Cli.Tracing;

/// <summary>
/// Names and decodes the events of the kinds this tool knows (every kind of format version 1), through the
/// <c>As*</c> readers of <see cref="TraceEvent"/>; the exporters share it so the Perfetto args and the CSV detail
/// column say the same. The timeline kinds (1 to 14) are what happened; the access-stream kinds (15 and up: the run's
/// configuration, phases, launches and accesses, for record and replay) are what the run did, and are not drawn.
/// </summary>
internal static class TraceEventFields
{
    public const int KnownKinds = (int)TraceEventKind.CpuAccess + 1;

    private static readonly string[] s_kindNames = BuildKindNames();

    public static bool IsKnown(TraceEventKind kind) => kind > TraceEventKind.None && (int)kind < KnownKinds;

    /// <summary>Whether the kind is drawn on a timeline (1 to 14), rather than part of the recorded access stream.</summary>
    public static bool IsTimelineKind(TraceEventKind kind) => kind > TraceEventKind.None && kind <= TraceEventKind.PagemapLifetime;

    /// <summary>The kind's enum name ("DeviceFault"), or "Kind15" for a kind this tool does not know.</summary>
    public static string KindName(TraceEventKind kind) =>
        IsKnown(kind) ? s_kindNames[(int)kind] : "Kind" + ((ushort)kind).ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>What a timeline calls the event: the kernel function where there is one.</summary>
    public static string TimelineName(in TraceEvent e) => e.Kind switch
    {
        TraceEventKind.CpuFault => "CPU fault",
        TraceEventKind.DeviceFault => "device fault",
        TraceEventKind.FaultBatch => "fault batch",
        TraceEventKind.RangeFault => "hmm_range_fault",
        TraceEventKind.Invalidate => "invalidate",
        TraceEventKind.MigrateSetup => "migrate_vma_setup",
        TraceEventKind.MigratePages => "migrate_vma_pages",
        TraceEventKind.MigrateFinalize => "migrate_vma_finalize",
        TraceEventKind.Copy => "copy",
        TraceEventKind.Evict => "evict",
        TraceEventKind.TlbInvalidate => "TLB invalidate",
        TraceEventKind.DeviceAlloc => "device alloc",
        TraceEventKind.DeviceFree => "device free",
        TraceEventKind.PagemapLifetime => e.AsPagemapLifetime().Change switch
        {
            TracePagemapChange.Kill => "pagemap kill",
            TracePagemapChange.Idle => "pagemap idle",
            TracePagemapChange.Removed => "pagemap removed",
            _ => "pagemap",
        },
        _ => KindName(e.Kind),
    };

    /// <summary>The end on the virtual clock of a kind that has a duration (batch, copy), otherwise null.</summary>
    public static long? EndNs(in TraceEvent e) => e.Kind switch
    {
        TraceEventKind.FaultBatch => e.AsFaultBatch().EndNs,
        TraceEventKind.Copy => e.AsCopy().EndNs,
        _ => null,
    };

    /// <summary>Sends the event's decoded payload to <paramref name="sink"/>; sends nothing for an unknown kind.</summary>
    public static void Describe(in TraceEvent e, ITraceFieldSink sink)
    {
        switch (e.Kind)
        {
            case TraceEventKind.CpuFault:
                {
                    (ulong address, FaultFlags flags, VmFaultResult result) = e.AsCpuFault();
                    sink.Hex("address", address);
                    sink.Text("flags", EnumNames.Of(flags));
                    sink.Text("result", EnumNames.Of(result));
                    break;
                }

            case TraceEventKind.DeviceFault:
                {
                    (ulong address, TraceDeviceAccess access) = e.AsDeviceFault();
                    sink.Hex("address", address);
                    sink.Text("access", EnumNames.Of(access));
                    break;
                }

            case TraceEventKind.FaultBatch:
                {
                    (uint batch, ulong faults, ulong duplicates, long endNs) = e.AsFaultBatch();
                    sink.Number("batch", batch);
                    sink.Number("faults", (long)faults);
                    sink.Number("duplicates_merged", (long)duplicates);
                    sink.Number("end_ns", endNs);
                    break;
                }

            case TraceEventKind.RangeFault:
                {
                    (ulong start, ulong pages, ulong retries, Errno result) = e.AsRangeFault();
                    sink.Hex("start", start);
                    sink.Number("pages", (long)pages);
                    sink.Number("retries", (long)retries);
                    sink.Text("result", EnumNames.Of(result));
                    break;
                }

            case TraceEventKind.Invalidate:
                {
                    (ulong start, ulong end, MmuNotifierEvent reason, ulong visited) = e.AsInvalidate();
                    sink.Hex("start", start);
                    sink.Hex("end", end);
                    sink.Text("event", EnumNames.Of(reason));
                    sink.Number("notifiers_visited", (long)visited);
                    break;
                }

            case TraceEventKind.MigrateSetup:
                {
                    (TraceDirection direction, MigrateVmaSelect select, ulong start, ulong pages, ulong selected) = e.AsMigrateSetup();
                    sink.Text("direction", EnumNames.Of(direction));
                    sink.Text("select", EnumNames.Of(select));
                    sink.Hex("start", start);
                    sink.Number("pages", (long)pages);
                    sink.Number("selected", (long)selected);
                    break;
                }

            case TraceEventKind.MigratePages:
                {
                    (TraceDirection direction, ulong start, ulong pages, ulong migrating) = e.AsMigratePages();
                    sink.Text("direction", EnumNames.Of(direction));
                    sink.Hex("start", start);
                    sink.Number("pages", (long)pages);
                    sink.Number("migrating", (long)migrating);
                    break;
                }

            case TraceEventKind.MigrateFinalize:
                {
                    (TraceDirection direction, ulong start, ulong moved, ulong declined) = e.AsMigrateFinalize();
                    sink.Text("direction", EnumNames.Of(direction));
                    sink.Hex("start", start);
                    sink.Number("moved", (long)moved);
                    sink.Number("declined", (long)declined);
                    break;
                }

            case TraceEventKind.Copy:
                {
                    (uint engine, TraceDirection direction, ulong bytes, long endNs) = e.AsCopy();
                    sink.Number("copy_engine", engine);
                    sink.Text("direction", EnumNames.Of(direction));
                    sink.Number("bytes", (long)bytes);
                    sink.Number("end_ns", endNs);
                    break;
                }

            case TraceEventKind.Evict:
                {
                    (ulong firstPfn, ulong pages) = e.AsEvict();
                    sink.Hex("first_pfn", firstPfn);
                    sink.Number("pages", (long)pages);
                    break;
                }

            case TraceEventKind.TlbInvalidate:
                {
                    (ulong start, ulong end) = e.AsTlbInvalidate();
                    sink.Hex("start", start);
                    sink.Hex("end", end);
                    break;
                }

            case TraceEventKind.DeviceAlloc:
                {
                    (ulong firstPfn, ulong pages, ulong inUse) = e.AsDeviceAlloc();
                    sink.Hex("first_pfn", firstPfn);
                    sink.Number("pages", (long)pages);
                    sink.Number("pages_in_use", (long)inUse);
                    break;
                }

            case TraceEventKind.DeviceFree:
                {
                    (ulong firstPfn, ulong pages, ulong inUse) = e.AsDeviceFree();
                    sink.Hex("first_pfn", firstPfn);
                    sink.Number("pages", (long)pages);
                    sink.Number("pages_in_use", (long)inUse);
                    break;
                }

            case TraceEventKind.PagemapLifetime:
                {
                    (ulong pagemapId, TracePagemapChange change, ulong referenced) = e.AsPagemapLifetime();
                    sink.Number("pagemap", (long)pagemapId);
                    sink.Text("change", EnumNames.Of(change));
                    sink.Number("referenced_pages", (long)referenced);
                    break;
                }

            case TraceEventKind.RunConfiguration:
                {
                    (uint field, ulong value) = e.AsRunConfiguration();
                    sink.Number("field", field);
                    sink.Number("value", (long)value);
                    break;
                }

            case TraceEventKind.Phase:
                {
                    (uint phase, ulong extent) = e.AsPhase();
                    sink.Number("phase", phase);
                    sink.Number("extent", (long)extent);
                    break;
                }

            case TraceEventKind.KernelLaunch:
                {
                    (ulong firstRow, ulong endRow, ulong extent) = e.AsKernelLaunch();
                    sink.Number("first_row", (long)firstRow);
                    sink.Number("end_row", (long)endRow);
                    sink.Number("extent", (long)extent);
                    break;
                }

            case TraceEventKind.DeviceAccess:
                {
                    (uint warp, ulong address, ulong bytes, TraceDeviceAccess access, bool endsItem, ulong item) = e.AsDeviceAccess();
                    sink.Number("warp", warp);
                    sink.Hex("address", address);
                    sink.Number("bytes", (long)bytes);
                    sink.Text("access", EnumNames.Of(access));
                    sink.Number("item", (long)item);
                    sink.Number("ends_item", endsItem ? 1 : 0);
                    break;
                }

            case TraceEventKind.CpuAccess:
                {
                    (ulong address, ulong bytes, bool write) = e.AsCpuAccess();
                    sink.Hex("address", address);
                    sink.Number("bytes", (long)bytes);
                    sink.Text("access", write ? "Write" : "Read");
                    break;
                }

            default:
                break;
        }
    }

    private static string[] BuildKindNames()
    {
        var names = new string[KnownKinds];
        for (int i = 1; i < KnownKinds; i++)
        {
            names[i] = ((TraceEventKind)i).ToString();
        }

        return names;
    }
}
