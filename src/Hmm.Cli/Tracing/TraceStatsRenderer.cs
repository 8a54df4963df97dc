using System.Globalization;
using System.Text.Json;
using Spectre.Console;

namespace Hmm.Cli.Tracing;

/// <summary>Writes <see cref="TraceStatistics"/> as text tables (Spectre.Console) or as JSON, and as the rows the HTML summary shows.</summary>
internal static class TraceStatsRenderer
{
    private static readonly double[] s_percentiles = [50, 90, 99];

    /// <summary>The totals as (name, value) rows, shared by the text output and the HTML summary.</summary>
    public static IReadOnlyList<(string Name, string Value)> Totals(TraceStatistics stats) =>
    [
        ("Events", Invariant($"{stats.Events:N0}{(stats.OtherEvents > 0 ? Invariant($" ({stats.OtherEvents:N0} of other kinds)") : "")}")),
        ("Devices", Invariant($"{stats.Devices}")),
        ("Simulated time", Time(stats.SimulatedNs)),
        ("Device faults", Invariant($"{stats.DeviceFaults:N0} ({stats.UnservicedFaults:N0} not serviced by a batch in the trace)")),
        ("Fault batches", Invariant($"{stats.Batches:N0} delivering {stats.FaultsDelivered:N0} faults ({stats.DuplicatesMerged:N0} duplicates merged)")),
        ("CPU faults", Invariant($"{stats.CpuFaults:N0}")),
        ("Migrated to device", Invariant($"{stats.PagesToDevice:N0} pages ({ByteSize.Format((ulong)stats.BytesToDevice)})")),
        ("Migrated to host", Invariant($"{stats.PagesToHost:N0} pages ({ByteSize.Format((ulong)stats.BytesToHost)})")),
        ("Migration declined", Invariant($"{stats.PagesDeclined:N0} pages")),
        ("Evictions", Invariant($"{stats.Evictions:N0} ({stats.EvictedPages:N0} pages)")),
        ("Copies", Invariant($"{stats.Copies:N0}: {ByteSize.Format((ulong)stats.CopyBytesToDevice)} to device, {ByteSize.Format((ulong)stats.CopyBytesToHost)} to host, {ByteSize.Format((ulong)stats.CopyBytesDeviceToDevice)} device to device")),
        ("Peak device memory in use", Invariant($"{stats.PeakDevicePagesInUse:N0} pages on one device")),
        ("hmm_range_fault retries", Invariant($"{stats.RangeFaultRetries:N0}")),
    ];

    public static void WriteText(TraceStatistics stats, string name, TextWriter writer)
    {
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        console.Profile.Width = 120;
        writer.WriteLine(Invariant($"hmmsim trace stats: {name}"));

        var kinds = new Table().Border(TableBorder.Rounded).Title("Events by kind").AddColumn("Kind").AddColumn(new TableColumn("Count").RightAligned());
        for (int kind = 1; kind < TraceEventFields.KnownKinds; kind++)
        {
            kinds.AddRow(TraceEventFields.KindName((TraceEventKind)kind), Invariant($"{stats.Count((TraceEventKind)kind):N0}"));
        }

        kinds.AddRow("other", Invariant($"{stats.OtherEvents:N0}"));
        console.Write(kinds);

        var totals = new Table().Border(TableBorder.Rounded).Title("Totals").AddColumn("Counter").AddColumn("Value");
        foreach ((string counter, string value) in Totals(stats))
        {
            totals.AddRow(Markup.Escape(counter), Markup.Escape(value));
        }

        console.Write(totals);
        console.Write(HistogramTable("Batch sizes (faults per batch)", stats.BatchSizes, Invariant));
        console.Write(HistogramTable("Fault latency (device fault to the end of its batch)", stats.FaultLatencies, Time));
    }

    public static void WriteJson(TraceStatistics stats, string name, Stream output)
    {
        using var json = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("trace", name);
        json.WriteNumber("events", stats.Events);
        json.WriteStartObject("kinds");
        for (int kind = 1; kind < TraceEventFields.KnownKinds; kind++)
        {
            json.WriteNumber(JsonNamingPolicy.CamelCase.ConvertName(TraceEventFields.KindName((TraceEventKind)kind)), stats.Count((TraceEventKind)kind));
        }

        json.WriteNumber("other", stats.OtherEvents);
        json.WriteEndObject();
        json.WriteNumber("devices", stats.Devices);
        json.WriteNumber("simulatedNanoseconds", stats.SimulatedNs);
        json.WriteNumber("deviceFaults", stats.DeviceFaults);
        json.WriteNumber("unservicedFaults", stats.UnservicedFaults);
        json.WriteNumber("faultBatches", stats.Batches);
        json.WriteNumber("faultsDelivered", stats.FaultsDelivered);
        json.WriteNumber("duplicatesMerged", stats.DuplicatesMerged);
        json.WriteNumber("cpuFaults", stats.CpuFaults);
        json.WriteNumber("pagesToDevice", stats.PagesToDevice);
        json.WriteNumber("bytesToDevice", stats.BytesToDevice);
        json.WriteNumber("pagesToHost", stats.PagesToHost);
        json.WriteNumber("bytesToHost", stats.BytesToHost);
        json.WriteNumber("pagesDeviceToDevice", stats.PagesDeviceToDevice);
        json.WriteNumber("pagesDeclined", stats.PagesDeclined);
        json.WriteNumber("evictions", stats.Evictions);
        json.WriteNumber("evictedPages", stats.EvictedPages);
        json.WriteNumber("copies", stats.Copies);
        json.WriteNumber("copyBytesToDevice", stats.CopyBytesToDevice);
        json.WriteNumber("copyBytesToHost", stats.CopyBytesToHost);
        json.WriteNumber("copyBytesDeviceToDevice", stats.CopyBytesDeviceToDevice);
        json.WriteNumber("peakDevicePagesInUse", stats.PeakDevicePagesInUse);
        json.WriteNumber("rangeFaultRetries", stats.RangeFaultRetries);
        WriteHistogram(json, "batchSizes", stats.BatchSizes);
        WriteHistogram(json, "faultLatencyNanoseconds", stats.FaultLatencies);
        json.WriteEndObject();
    }

    private static void WriteHistogram(Utf8JsonWriter json, string name, LogHistogram histogram)
    {
        json.WriteStartObject(name);
        json.WriteNumber("count", histogram.Count);
        json.WriteNumber("min", histogram.Min);
        json.WriteNumber("mean", histogram.Mean);
        foreach (double p in s_percentiles)
        {
            json.WriteNumber(Invariant($"p{p}"), histogram.Percentile(p));
        }

        json.WriteNumber("max", histogram.Max);
        json.WriteStartArray("buckets");
        foreach ((long from, long to, long count) in histogram.PowerOfTwoBuckets())
        {
            json.WriteStartObject();
            json.WriteNumber("from", from);
            json.WriteNumber("to", to);
            json.WriteNumber("count", count);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static Table HistogramTable(string title, LogHistogram histogram, Func<long, string> format)
    {
        var table = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(title))
            .AddColumn("Range").AddColumn(new TableColumn("Count").RightAligned()).AddColumn("Share");
        if (histogram.Count == 0)
        {
            table.AddRow("(none)", "0", string.Empty);
            return table;
        }

        foreach ((long from, long to, long count) in histogram.PowerOfTwoBuckets())
        {
            int bar = (int)Math.Round(40.0 * count / histogram.Count);
            table.AddRow(
                from == to ? format(from) : Invariant($"{format(from)} - {format(to)}"),
                Invariant($"{count:N0}"),
                Invariant($"{new string('#', bar)} {100.0 * count / histogram.Count:0.0}%"));
        }

        table.AddRow(
            "percentiles",
            Invariant($"{histogram.Count:N0}"),
            Invariant($"p50 {format(histogram.Percentile(50))}, p90 {format(histogram.Percentile(90))}, p99 {format(histogram.Percentile(99))}, max {format(histogram.Max)}, mean {format((long)Math.Round(histogram.Mean))}"));
        return table;
    }

    /// <summary>A virtual-clock duration in the unit that reads best.</summary>
    public static string Time(long ns) => ns switch
    {
        < 10_000 => Invariant($"{ns:N0} ns"),
        < 10_000_000 => Invariant($"{ns / 1e3:0.0} us"),
        < 10_000_000_000 => Invariant($"{ns / 1e6:0.0} ms"),
        _ => Invariant($"{ns / 1e9:0.00} s"),
    };

    private static string Invariant(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
