using System.CommandLine;
using System.Globalization;

namespace Hmm.Cli.Tracing;

/// <summary>
/// <c>hmmsim trace</c>: tools over a recorded trace (<c>hmmsim --trace FILE</c>), each reading it once, streaming:
/// <c>export</c> (Perfetto JSON or CSV), <c>stats</c> (counts, totals, histograms) and <c>plot</c> (images and an
/// HTML summary). Exit codes: 0 success; 2 a bad command line (unknown option or format, a trace file that does
/// not exist), with one line on stderr; 1 a file that is not a valid trace (the reader's message, naming the byte
/// offset) or an output that cannot be written, with one line on stderr; 130 cancelled.
/// </summary>
internal static class TraceCommand
{
    /// <summary>Builds the <c>trace</c> command; its subcommands write results to <paramref name="output"/> and errors to <paramref name="error"/>.</summary>
    public static Command Create(TextWriter output, TextWriter error)
    {
        var command = new Command("trace", "Tools over a trace recorded with hmmsim --trace FILE: export it to Perfetto or CSV, count what happened, plot it.");
        command.Subcommands.Add(CreateExport(output, error));
        command.Subcommands.Add(CreateStats(output, error));
        command.Subcommands.Add(CreatePlot(output, error));
        return command;
    }

    private static Command CreateExport(TextWriter output, TextWriter error)
    {
        var file = new Argument<string>("FILE") { Description = "The trace (.hmmtrace) to export." };
        var format = new Option<string>("--format", "-f")
        {
            Description = "perfetto: Chrome trace-event JSON for ui.perfetto.dev (tracks per CPU thread and device engine, counters, flows); csv: one row per event.",
            HelpName = "perfetto|csv",
            Required = true,
        };
        OneOf(format, "perfetto", "csv");
        var outputPath = new Option<string?>("--output", "-o")
        {
            Description = "Where to write; default FILE with the extension .json or .csv.",
            HelpName = "path",
        };
        var export = new Command("export", "Export a trace as Perfetto (Chrome trace-event) JSON or as CSV.") { file, format, outputPath };
        export.SetAction((parsed, cancellationToken) => GuardAsync(error, async () =>
        {
            string path = parsed.GetValue(file)!;
            bool perfetto = parsed.GetValue(format) == "perfetto";
            string destination = parsed.GetValue(outputPath) ?? Path.ChangeExtension(path, perfetto ? ".json" : ".csv");
            if (!File.Exists(path))
            {
                return await UsageAsync(error, $"trace file '{path}' does not exist").ConfigureAwait(false);
            }

            string message = await WriteAtomicallyAsync(destination, stream => perfetto
                ? ExportPerfettoAsync(path, stream, destination, cancellationToken)
                : ExportCsvAsync(path, stream, destination, cancellationToken)).ConfigureAwait(false);
            await output.WriteLineAsync(message).ConfigureAwait(false);
            return HmmSimCommand.ExitSuccess;
        }));
        return export;
    }

    private static Command CreateStats(TextWriter output, TextWriter error)
    {
        var file = new Argument<string>("FILE") { Description = "The trace (.hmmtrace) to count." };
        var json = new Option<bool>("--json") { Description = "Print the statistics as JSON instead of tables." };
        var stats = new Command("stats", "Count a trace's events: totals, batch sizes and fault latencies with percentiles.") { file, json };
        stats.SetAction((parsed, cancellationToken) => GuardAsync(error, async () =>
        {
            string path = parsed.GetValue(file)!;
            if (!File.Exists(path))
            {
                return await UsageAsync(error, $"trace file '{path}' does not exist").ConfigureAwait(false);
            }

            TraceStatistics statistics = await ComputeStatisticsAsync(path, cancellationToken).ConfigureAwait(false);
            if (parsed.GetValue(json))
            {
                using var buffer = new MemoryStream();
                TraceStatsRenderer.WriteJson(statistics, Path.GetFileName(path), buffer);
                await output.WriteLineAsync(System.Text.Encoding.UTF8.GetString(buffer.ToArray())).ConfigureAwait(false);
            }
            else
            {
                TraceStatsRenderer.WriteText(statistics, Path.GetFileName(path), output);
            }

            return HmmSimCommand.ExitSuccess;
        }));
        return stats;
    }

    private static Command CreatePlot(TextWriter output, TextWriter error)
    {
        var files = new Argument<string[]>("FILE") { Description = "One or more traces (.hmmtrace); with several, comparison charts too.", Arity = ArgumentArity.OneOrMore };
        var directory = new Option<string?>("--output", "-o")
        {
            Description = "Directory for the images and index.html; default FILE's name with -plots, beside the first FILE.",
            HelpName = "dir",
        };
        var imageFormat = new Option<string>("--image-format")
        {
            Description = "png or svg.",
            HelpName = "png|svg",
            DefaultValueFactory = _ => "png",
        };
        OneOf(imageFormat, "png", "svg");
        var plot = new Command("plot", "Plot traces: faults, migrated bytes and device memory over simulated time, a comparison of several runs, and an HTML summary.")
        {
            files, directory, imageFormat,
        };
        plot.SetAction((parsed, cancellationToken) => GuardAsync(error, async () =>
        {
            string[] paths = parsed.GetValue(files)!;
            foreach (string path in paths)
            {
                if (!File.Exists(path))
                {
                    return await UsageAsync(error, $"trace file '{path}' does not exist").ConfigureAwait(false);
                }
            }

            string first = paths[0];
            string target = parsed.GetValue(directory)
                ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(first))!, Path.GetFileNameWithoutExtension(first) + "-plots");
            var runs = new List<TraceRun>(paths.Length);
            foreach (string path in paths)
            {
                runs.Add(await TraceRun.ReadAsync(path, cancellationToken).ConfigureAwait(false));
            }

            string index = TracePlotter.Write(runs, target, parsed.GetValue(imageFormat) == "svg" ? TracePlotter.ImageFormat.Svg : TracePlotter.ImageFormat.Png);
            await output.WriteLineAsync($"hmmsim: wrote the plots of {runs.Count} trace{(runs.Count == 1 ? "" : "s")} and {index}").ConfigureAwait(false);
            return HmmSimCommand.ExitSuccess;
        }));
        return plot;
    }

    // Like AcceptOnlyFromAmong, with a one-line message (System.CommandLine's lists the values on several lines).
    private static void OneOf(Option<string> option, string first, string second) =>
        option.Validators.Add(result =>
        {
            string? value = result.GetValueOrDefault<string>();
            if (value != first && value != second)
            {
                result.AddError($"{option.Name} '{value}' is not {first} or {second}");
            }
        });

    /// <summary>Reads a trace once into a <see cref="TraceStatistics"/>.</summary>
    public static async Task<TraceStatistics> ComputeStatisticsAsync(string path, CancellationToken cancellationToken)
    {
        var statistics = new TraceStatistics();
        await ReadTraceAsync(path, [statistics], cancellationToken).ConfigureAwait(false);
        statistics.Complete();
        return statistics;
    }

    private static async Task<string> ExportPerfettoAsync(string path, Stream destination, string destinationPath, CancellationToken cancellationToken)
    {
        using var exporter = new PerfettoExporter(destination);
        var counter = new EventCounter();
        TraceHeader header = await ReadTraceAsync(path, [exporter, counter], cancellationToken).ConfigureAwait(false);
        exporter.Complete(header, counter.Events);
        return string.Create(CultureInfo.InvariantCulture,
            $"hmmsim: wrote {exporter.Written:N0} trace events ({exporter.FaultFlows:N0} fault-to-batch and {exporter.MigrationFlows:N0} batch-to-migration flows{NotDrawn(exporter.Skipped)}) to {destinationPath}");
    }

    private static async Task<string> ExportCsvAsync(string path, Stream destination, string destinationPath, CancellationToken cancellationToken)
    {
        await using var writer = new StreamWriter(destination, new System.Text.UTF8Encoding(false), 64 * 1024, leaveOpen: true);
        var exporter = new CsvExporter(writer);
        await ReadTraceAsync(path, [exporter], cancellationToken).ConfigureAwait(false);
        await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        return string.Create(CultureInfo.InvariantCulture, $"hmmsim: wrote {exporter.Rows:N0} rows{Skipped(exporter.Skipped)} to {destinationPath}");
    }

    private static string NotDrawn(long skipped) =>
        skipped == 0 ? string.Empty : string.Create(CultureInfo.InvariantCulture, $"; {skipped:N0} events of the recorded access stream, for replay, not drawn");

    private static string Skipped(long skipped) =>
        skipped == 0 ? string.Empty : string.Create(CultureInfo.InvariantCulture, $"; {skipped:N0} events of kinds this tool does not know skipped");

    /// <summary>Streams the trace file at <paramref name="path"/> into the consumers.</summary>
    /// <exception cref="InvalidTraceFileException">The file is not a valid trace.</exception>
    public static async Task<TraceHeader> ReadTraceAsync(string path, IReadOnlyList<ITraceConsumer> consumers, CancellationToken cancellationToken)
    {
        await using var input = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan | FileOptions.Asynchronous);
        try
        {
            return await TraceInput.ReadAsync(input, consumers, cancellationToken).ConfigureAwait(false);
        }
        catch (TraceFormatException invalid)
        {
            throw new InvalidTraceFileException(path, invalid);
        }
    }

    // Writes into a temporary file beside the destination and moves it into place only when complete, so a
    // trace found corrupted halfway leaves no half-written output.
    private static async Task<string> WriteAtomicallyAsync(string destination, Func<Stream, Task<string>> write)
    {
        string full = Path.GetFullPath(destination);
        string temporary = Path.Combine(Path.GetDirectoryName(full)!, "." + Path.GetFileName(full) + ".partial");
        try
        {
            string message;
            await using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous))
            {
                message = await write(stream).ConfigureAwait(false);
            }

            File.Move(temporary, full, overwrite: true);
            return message;
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    private static async Task<int> GuardAsync(TextWriter error, Func<Task<int>> body)
    {
        try
        {
            return await body().ConfigureAwait(false);
        }
        catch (InvalidTraceFileException invalid)
        {
            await error.WriteLineAsync($"hmmsim: {invalid.Message}").ConfigureAwait(false);
            return HmmSimCommand.ExitFailure;
        }
        catch (Exception failure) when (failure is IOException or UnauthorizedAccessException)
        {
            await error.WriteLineAsync($"hmmsim: {failure.Message.ReplaceLineEndings(" ")}").ConfigureAwait(false);
            return HmmSimCommand.ExitFailure;
        }
        catch (OperationCanceledException)
        {
            await error.WriteLineAsync("hmmsim: cancelled").ConfigureAwait(false);
            return HmmSimCommand.ExitCancelled;
        }
    }

    private static async Task<int> UsageAsync(TextWriter error, string message)
    {
        await error.WriteLineAsync($"hmmsim: {message} (see hmmsim trace --help)").ConfigureAwait(false);
        return HmmSimCommand.ExitUsage;
    }

    private sealed class EventCounter : ITraceConsumer
    {
        public long Events { get; private set; }

        public void Add(in TraceEvent traceEvent) => Events++;
    }
}
