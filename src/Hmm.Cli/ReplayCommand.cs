using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hmm.SimGpu;

namespace Hmm.Cli;

/// <summary>
/// <c>hmmsim replay FILE [options]</c>: replays a run recorded with a trace (<see cref="Simulation.Replay"/>) on the
/// recorded configuration or a changed one, and prints the same summary (or JSON) as a run, after a line saying
/// which trace it replays and what changed. Exit codes as for a run; an unreadable, corrupted or non-run trace is a
/// bad argument (2).
/// </summary>
internal static class ReplayCommand
{
    public static Command Create(TextWriter output, TextWriter error, bool interactive)
    {
        var file = new Argument<FileInfo>("FILE") { Description = "The trace of a run recorded with --trace." };
        var deviceMemory = new Option<ulong?>("--device-memory", "-m")
        {
            Description = "Memory of each simulated GPU, a multiple of 2 MiB, at least 16 MiB. Default: as recorded.",
            HelpName = "size",
            CustomParser = result => ParseSize(result, "--device-memory"),
        };
        var batchSize = new Option<int?>("--batch-size", "-b") { Description = "Most fault records the driver services in one batch, 1 to 8192. Default: as recorded.", HelpName = "faults" };
        var engines = new Option<int?>("--engines") { Description = "Engines per GPU, 1 to 256. Default: as recorded.", HelpName = "count" };
        var warps = new Option<int?>("--warps") { Description = "Warps per engine, 1 to 1024; they take the recorded work items in order. Default: as recorded.", HelpName = "count" };
        var metadataOnly = new Option<bool?>("--metadata-only") { Description = "Replay without page contents (true or false). Default: as recorded.", HelpName = "true|false" };
        var farFault = new Option<long?>("--far-fault-latency")
        {
            Description = "Cost of servicing one fault batch in simulated nanoseconds (the device model's far-fault latency). Default: the default model's 45000.",
            HelpName = "ns",
        };
        var pcie = new Option<double?>("--pcie-bandwidth")
        {
            Description = "The PCIe curve's bandwidth in bytes per second (for example 24e9 for a 32 GB/s link). Default: the default model's 12e9.",
            HelpName = "bytes/s",
        };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON, with a \"replay\" object naming the trace and the changes." };
        var trace = new Option<FileInfo?>("--trace") { Description = "Record the replay itself into this trace file (which can be replayed in turn).", HelpName = "FILE" };
        var command = new Command("replay", "Replays a run recorded with --trace on the recorded configuration, or on the one the options change, to compare them on identical input.")
        {
            file, deviceMemory, batchSize, engines, warps, metadataOnly, farFault, pcie, json, trace,
        };
        command.SetAction(async (parsed, cancellationToken) =>
        {
            var changes = new List<string>();
            SimGpuCostModel? costs = null;
            long? farFaultLatency = parsed.GetValue(farFault);
            double? pcieBandwidth = parsed.GetValue(pcie);
            if (farFaultLatency is < 0 || pcieBandwidth is { } bandwidth && (!double.IsFinite(bandwidth) || bandwidth <= 0))
            {
                await error.WriteLineAsync("hmmsim: --far-fault-latency must be at least 0 and --pcie-bandwidth positive (see hmmsim replay --help)").ConfigureAwait(false);
                return HmmSimCommand.ExitUsage;
            }

            if (farFaultLatency is not null || pcieBandwidth is not null)
            {
                var defaults = new SimGpuCostModel();
                costs = defaults with
                {
                    FarFaultLatency = farFaultLatency ?? defaults.FarFaultLatency,
                    PcieBandwidth = pcieBandwidth ?? defaults.PcieBandwidth,
                };
            }

            var replayOptions = new SimulationReplayOptions
            {
                DeviceMemoryBytes = parsed.GetValue(deviceMemory),
                BatchSize = parsed.GetValue(batchSize),
                Engines = parsed.GetValue(engines),
                WarpsPerEngine = parsed.GetValue(warps),
                MetadataOnly = parsed.GetValue(metadataOnly),
                Costs = costs,
            };
            Describe(changes, replayOptions, farFaultLatency, pcieBandwidth);
            FileInfo input = parsed.GetValue(file)!;
            FileInfo? traceFile = parsed.GetValue(trace);
            FileStream recording;
            TraceWriter? writer = null;
            try
            {
                recording = input.OpenRead();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                await error.WriteLineAsync($"hmmsim: cannot read {input.Name}: {e.Message}").ConfigureAwait(false);
                return HmmSimCommand.ExitUsage;
            }

            SimulationReport report;
            await using (recording.ConfigureAwait(false))
            {
                if (traceFile is not null && !TraceFile.TryCreate(traceFile.ToString(), out writer, out string? problem))
                {
                    await error.WriteLineAsync($"hmmsim: {problem}").ConfigureAwait(false);
                    return HmmSimCommand.ExitUsage;
                }

                try
                {
                    report = Simulation.Replay(recording, replayOptions, writer, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    await error.WriteLineAsync("hmmsim: cancelled").ConfigureAwait(false);
                    return HmmSimCommand.ExitCancelled;
                }
                catch (HmmException e) when (e.Error == Errno.EINVAL)
                {
                    await error.WriteLineAsync($"hmmsim: cannot replay {input.Name}: {WithoutErrno(e).TrimEnd('.')}").ConfigureAwait(false);
                    return HmmSimCommand.ExitUsage;
                }
                catch (Exception e) when (e is HmmException or KernelBugException or IOException)
                {
                    await error.WriteLineAsync($"hmmsim: the replay failed: {e.Message}").ConfigureAwait(false);
                    return HmmSimCommand.ExitFailure;
                }
                finally
                {
                    writer?.Dispose();
                }
            }

            string what = changes.Count == 0 ? "as recorded" : "with " + string.Join(", ", changes);
            if (parsed.GetValue(json))
            {
                JsonNode node = JsonNode.Parse(JsonReport.Write(report))!;
                node["replay"] = new JsonObject
                {
                    ["file"] = input.FullName,
                    ["changes"] = new JsonArray([.. changes.Select(c => (JsonNode)JsonValue.Create(c))]),
                    ["accessesReplayed"] = report.AccessesReplayed,
                };
                await output.WriteLineAsync(node.ToJsonString(new JsonSerializerOptions { WriteIndented = true })).ConfigureAwait(false);
            }
            else
            {
                await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"hmmsim: replay of {input.Name} ({report.AccessesReplayed:N0} recorded accesses) {what}")).ConfigureAwait(false);
                SummaryRenderer.Write(report, output, interactive);
            }

            if (report.DataCheck == DataCheckResult.Failed)
            {
                await error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"hmmsim: data check failed: {report.DataErrors} of {report.PagesChecked} pages held wrong values")).ConfigureAwait(false);
                return HmmSimCommand.ExitFailure;
            }

            return HmmSimCommand.ExitSuccess;
        });
        return command;
    }

    private static void Describe(List<string> changes, SimulationReplayOptions options, long? farFaultLatency, double? pcieBandwidth)
    {
        if (options.DeviceMemoryBytes is { } memory)
        {
            changes.Add($"device memory {ByteSize.Format(memory)}");
        }

        if (options.BatchSize is { } batch)
        {
            changes.Add(string.Create(CultureInfo.InvariantCulture, $"batch size {batch}"));
        }

        if (options.Engines is { } engines)
        {
            changes.Add(string.Create(CultureInfo.InvariantCulture, $"{engines} engines"));
        }

        if (options.WarpsPerEngine is { } warps)
        {
            changes.Add(string.Create(CultureInfo.InvariantCulture, $"{warps} warps per engine"));
        }

        if (options.MetadataOnly is { } metadataOnly)
        {
            changes.Add(metadataOnly ? "metadata-only" : "with page contents");
        }

        if (farFaultLatency is { } latency)
        {
            changes.Add(string.Create(CultureInfo.InvariantCulture, $"far-fault latency {latency} ns"));
        }

        if (pcieBandwidth is { } bandwidth)
        {
            changes.Add(string.Create(CultureInfo.InvariantCulture, $"PCIe bandwidth {bandwidth:G4} B/s"));
        }
    }

    private static ulong? ParseSize(ArgumentResult result, string option)
    {
        string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : string.Empty;
        if (ByteSize.TryParse(text, out ulong bytes))
        {
            return bytes;
        }

        result.AddError($"{option} '{text}' is not a size such as 4096, 64MiB or 16GiB");
        return null;
    }

    private static string WithoutErrno(HmmException error)
    {
        string prefix = error.Error + ": ";
        return error.Message.StartsWith(prefix, StringComparison.Ordinal) ? error.Message[prefix.Length..] : error.Message;
    }
}
