using System.Globalization;
using System.Net;
using System.Text;
using ScottPlot;

namespace Hmm.Cli.Tracing;

/// <summary>
/// Draws the charts of <c>hmmsim trace plot</c> with ScottPlot and writes them, with an <c>index.html</c> that
/// shows them and each run's statistics, into one directory. Per run: device and CPU faults over simulated time,
/// migrated bytes over simulated time by direction, and device memory (pages in use and pages resident) over
/// simulated time, per device. With several runs, a comparison chart of total faults, migrated bytes, evictions
/// and simulated time.
/// </summary>
internal static class TracePlotter
{
    private const int Width = 900;
    private const int Height = 420;

    public enum ImageFormat
    {
        Png,
        Svg,
    }

    /// <summary>Writes the images and index.html into <paramref name="directory"/> (created if needed).</summary>
    /// <returns>The path of index.html.</returns>
    public static string Write(IReadOnlyList<TraceRun> runs, string directory, ImageFormat format)
    {
        Directory.CreateDirectory(directory);
        string extension = format == ImageFormat.Svg ? "svg" : "png";
        var names = UniqueFileNames(runs);
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>hmmsim trace plots</title>\n")
            .Append("<style>body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse;margin:1em 0}")
            .Append("td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{max-width:100%;display:block;margin:1em 0}</style>\n</head>\n<body>\n")
            .Append("<h1>hmmsim trace plots</h1>\n<p>Times are on the simulation's virtual clock.</p>\n");

        if (runs.Count > 1)
        {
            html.Append("<h2>Comparison</h2>\n");
            foreach ((string file, string title, Func<TraceStatistics, double> metric) in s_comparisons)
            {
                string comparison = "comparison-" + file + "." + extension;
                Save(Comparison(runs, title, metric), Path.Combine(directory, comparison), format, Width, Height);
                html.Append(Image(comparison, "comparison: " + title));
            }
        }

        for (int r = 0; r < runs.Count; r++)
        {
            TraceRun run = runs[r];
            string faults = names[r] + "-faults." + extension;
            string migrated = names[r] + "-migrated." + extension;
            string residency = names[r] + "-residency." + extension;
            Save(Faults(run), Path.Combine(directory, faults), format, Width, Height);
            Save(Migrated(run), Path.Combine(directory, migrated), format, Width, Height);
            Save(Residency(run), Path.Combine(directory, residency), format, Width, Height);

            html.Append("<h2>").Append(WebUtility.HtmlEncode(run.Name)).Append("</h2>\n<p>")
                .Append(WebUtility.HtmlEncode(run.Path)).Append("</p>\n<table>\n");
            foreach ((string name, string value) in TraceStatsRenderer.Totals(run.Statistics))
            {
                html.Append("<tr><th>").Append(WebUtility.HtmlEncode(name)).Append("</th><td>").Append(WebUtility.HtmlEncode(value)).Append("</td></tr>\n");
            }

            AppendPercentiles(html, "Batch size (faults per batch)", run.Statistics.BatchSizes, v => v.ToString("N0", CultureInfo.InvariantCulture));
            AppendPercentiles(html, "Fault latency", run.Statistics.FaultLatencies, TraceStatsRenderer.Time);
            html.Append("</table>\n")
                .Append(Image(faults, "faults over simulated time"))
                .Append(Image(migrated, "migrated bytes over simulated time"))
                .Append(Image(residency, "device memory over simulated time"));
        }

        html.Append("</body>\n</html>\n");
        string index = Path.Combine(directory, "index.html");
        File.WriteAllText(index, html.ToString(), new UTF8Encoding(false));
        return index;
    }

    private static Plot Faults(TraceRun run)
    {
        TraceTimeline timeline = run.Timeline;
        var plot = new Plot();
        double[] xs = Milliseconds(timeline);
        AddLine(plot, xs, timeline.DeviceFaults.ToArray(), "device faults");
        AddLine(plot, xs, timeline.CpuFaults.ToArray(), "CPU faults");
        Label(plot, run.Name + ": faults per " + TraceStatsRenderer.Time(timeline.BinNs), "faults");
        return plot;
    }

    private static Plot Migrated(TraceRun run)
    {
        TraceTimeline timeline = run.Timeline;
        var plot = new Plot();
        double[] xs = Milliseconds(timeline);
        AddLine(plot, xs, Mebibytes(timeline.BytesToDevice), "to device");
        AddLine(plot, xs, Mebibytes(timeline.BytesToHost), "to host");
        Label(plot, run.Name + ": MiB migrated per " + TraceStatsRenderer.Time(timeline.BinNs), "MiB");
        return plot;
    }

    private static Plot Residency(TraceRun run)
    {
        TraceTimeline timeline = run.Timeline;
        var plot = new Plot();
        double[] xs = Milliseconds(timeline);
        foreach (ushort device in timeline.Devices)
        {
            AddLine(plot, xs, timeline.PagesInUse(device), string.Create(CultureInfo.InvariantCulture, $"gpu{device} pages in use"));
            AddLine(plot, xs, timeline.PagesResident(device), string.Create(CultureInfo.InvariantCulture, $"gpu{device} pages resident"));
        }

        Label(plot, run.Name + ": device memory", "pages");
        return plot;
    }

    private static readonly (string File, string Title, Func<TraceStatistics, double> Value)[] s_comparisons =
    [
        ("faults", "device faults", s => s.DeviceFaults),
        ("migrated", "MiB migrated (both directions)", s => (s.BytesToDevice + s.BytesToHost) / (1024.0 * 1024.0)),
        ("evictions", "evictions", s => s.Evictions),
        ("time", "simulated time (ms)", s => s.SimulatedNs / 1e6),
    ];

    // One bar per run, a chart per metric so that each keeps its own scale.
    private static Plot Comparison(IReadOnlyList<TraceRun> runs, string title, Func<TraceStatistics, double> metric)
    {
        var plot = new Plot();
        double[] positions = new double[runs.Count];
        string[] labels = new string[runs.Count];
        double[] values = new double[runs.Count];
        for (int r = 0; r < runs.Count; r++)
        {
            positions[r] = r;
            labels[r] = runs[r].Name;
            values[r] = metric(runs[r].Statistics);
        }

        plot.Add.Bars(positions, values);
        plot.Axes.Bottom.SetTicks(positions, labels);
        plot.Axes.Margins(bottom: 0);
        plot.Title("comparison: " + title);
        return plot;
    }

    private static void AddLine(Plot plot, double[] xs, double[] ys, string legend)
    {
        var line = plot.Add.ScatterLine(xs, ys);
        line.LegendText = legend;
        line.ConnectStyle = ConnectStyle.StepHorizontal;
    }

    private static void Label(Plot plot, string title, string yLabel)
    {
        plot.Title(title);
        plot.XLabel("simulated time (ms)");
        plot.YLabel(yLabel);
        plot.ShowLegend();
    }

    private static double[] Milliseconds(TraceTimeline timeline)
    {
        double[] xs = new double[timeline.UsedBins];
        for (int i = 0; i < xs.Length; i++)
        {
            xs[i] = i * (double)timeline.BinNs / 1e6;
        }

        return xs;
    }

    private static double[] Mebibytes(ReadOnlySpan<double> bytes)
    {
        double[] result = new double[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
        {
            result[i] = bytes[i] / (1024.0 * 1024.0);
        }

        return result;
    }

    private static void Save(Plot plot, string path, ImageFormat format, int width, int height)
    {
        if (format == ImageFormat.Svg)
        {
            plot.SaveSvg(path, width, height);
        }
        else
        {
            plot.SavePng(path, width, height);
        }
    }

    private static void AppendPercentiles(StringBuilder html, string name, LogHistogram histogram, Func<long, string> format) =>
        html.Append("<tr><th>").Append(WebUtility.HtmlEncode(name)).Append("</th><td>")
            .Append(WebUtility.HtmlEncode(histogram.Count == 0
                ? "none"
                : string.Create(CultureInfo.InvariantCulture, $"p50 {format(histogram.Percentile(50))}, p90 {format(histogram.Percentile(90))}, p99 {format(histogram.Percentile(99))}, max {format(histogram.Max)}")))
            .Append("</td></tr>\n");

    private static string Image(string file, string alt) =>
        string.Concat("<img src=\"", WebUtility.HtmlEncode(Uri.EscapeDataString(file)), "\" alt=\"", WebUtility.HtmlEncode(alt), "\">\n");

    // File names from the run names, made safe and distinct ("run", "run-2", ...).
    private static string[] UniqueFileNames(IReadOnlyList<TraceRun> runs)
    {
        var used = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        string[] names = new string[runs.Count];
        for (int r = 0; r < runs.Count; r++)
        {
            var safe = new StringBuilder();
            foreach (char c in runs[r].Name)
            {
                safe.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_');
            }

            string name = safe.Length == 0 ? "run" : safe.ToString();
            string candidate = name;
            for (int n = 2; !used.Add(candidate); n++)
            {
                candidate = string.Create(CultureInfo.InvariantCulture, $"{name}-{n}");
            }

            names[r] = candidate;
        }

        return names;
    }
}
