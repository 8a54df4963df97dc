using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Globalization;
using Hmm.SimGpu;

namespace Hmm.Cli;

/// <summary>
/// The hmmsim command line: parses the options into <see cref="SimulationOptions"/>, runs the simulation (with a
/// live progress display when the output is a terminal and the run takes more than a second) and prints the
/// summary, or the report as JSON with --json. Exit codes: 0 success, 1 the run failed or its data check did,
/// 2 a bad argument, 130 cancelled.
/// </summary>
internal sealed class HmmSimCommand
{
    public const int ExitSuccess = 0;
    public const int ExitFailure = 1;
    public const int ExitUsage = 2;
    public const int ExitCancelled = 130;

    private readonly TextWriter _output;
    private readonly TextWriter _error;
    private readonly bool _interactive;
    private readonly Option<WorkloadKind> _workload = new("--workload", "-w")
    {
        Description = "Access pattern of the GPU kernels: stream (STREAM triad c = a + 3b over three arrays), random (each item gathers a page picked uniformly from the seed), or stencil (5-point stencil over a 2-D grid, one page per row). Default stream.",
        HelpName = "stream|random|stencil",
        CustomParser = ParseWorkload,
    };

    private readonly Option<ulong?> _workingSet = new("--working-set", "-s")
    {
        Description = "Size of the buffer the process allocates and the kernels work on, a multiple of 4 KiB (units K, M, G, T or KiB, MiB, GiB, TiB, all powers of 1024). Default 96MiB.",
        HelpName = "size",
        CustomParser = result => ParseSize(result, "--working-set"),
    };

    private readonly Option<ulong?> _deviceMemory = new("--device-memory", "-m")
    {
        Description = "Memory of each simulated GPU, a multiple of 2 MiB, at least 16 MiB. Default: two thirds of the working set over all devices (150% oversubscription).",
        HelpName = "size",
        CustomParser = result => ParseSize(result, "--device-memory"),
    };

    private readonly Option<int> _batchSize = new("--batch-size", "-b")
    {
        Description = "Most fault records the driver fetches and services in one batch, 1 to 8192.",
        HelpName = "faults",
        DefaultValueFactory = _ => 256,
    };

    private readonly Option<int> _devices = new("--devices")
    {
        Description = "Simulated GPUs sharing the buffer, 1 to 16; each runs its own slice of the work items with its own driver.",
        HelpName = "count",
        DefaultValueFactory = _ => 1,
    };

    private readonly Option<ulong> _seed = new("--seed")
    {
        Description = "Seed of every random choice; the same options give the same report (except wall time).",
        HelpName = "number",
        DefaultValueFactory = _ => 42UL,
    };

    private readonly Option<bool> _metadataOnly = new("--metadata-only")
    {
        Description = "Pages carry no bytes: copies and accesses are only charged on the simulated clock, and the data check is skipped. For timing runs of many GiB.",
    };

    private readonly Option<int> _engines = new("--engines")
    {
        Description = "Engines (streaming multiprocessors) per GPU, 1 to 256.",
        HelpName = "count",
        DefaultValueFactory = _ => 8,
    };

    private readonly Option<int> _warps = new("--warps")
    {
        Description = "Warps per engine, 1 to 1024; a warp that faults stalls while the others go on.",
        HelpName = "count",
        DefaultValueFactory = _ => 64,
    };

    private readonly Option<int> _bytesPerWarpAccess = new("--bytes-per-warp-access")
    {
        Description = "Bytes of a page one work item covers, and so one warp access, a power of two from 64 to 4096; the items of a page run on neighbouring warps and fault on it together (duplicate faults merged in a batch).",
        HelpName = "bytes",
        DefaultValueFactory = _ => 512,
    };

    private readonly Option<int> _iterations = new("--iterations")
    {
        Description = "Kernel launches in each GPU phase, 1 to 100.",
        HelpName = "count",
        DefaultValueFactory = _ => 1,
    };

    private readonly Option<bool> _json = new("--json")
    {
        Description = "Print the report as JSON on stdout instead of the summary tables (no progress display).",
    };

    private readonly Option<string?> _trace = new("--trace")
    {
        Description = "Record the run's events (faults, batches, migrations, copies, evictions...) into FILE, a binary trace (docs/trace-format.md) for hmmsim trace export, stats and plot.",
        HelpName = "file",
    };

    private readonly Option<bool> _metrics = new("--metrics")
    {
        Description = "Listen to the Hmm meters during the run and print every instrument at the end (a table after the summary; with --json, a \"metrics\" object).",
    };

    private readonly RootCommand _root;

    public HmmSimCommand(TextWriter output, TextWriter error, bool interactive)
    {
        _output = output;
        _error = error;
        _interactive = interactive;
        _root = new RootCommand(
            "hmmsim: runs GPU kernels over a process's buffer on simulated GPUs with a fault-servicing driver (batched device faults, " +
            "migration to device memory, eviction when it is oversubscribed, CPU faults back to RAM) and reports what it cost on the simulated clock.")
        {
            _workload, _workingSet, _deviceMemory, _batchSize, _devices, _seed, _metadataOnly, _engines, _warps, _bytesPerWarpAccess, _iterations, _json, _trace, _metrics,
        };
        _root.SetAction(RunAsync);
        _root.Subcommands.Add(ReplayCommand.Create(output, error, interactive));
        _root.Subcommands.Add(Tracing.TraceCommand.Create(output, error));
    }

    /// <summary>Parses <paramref name="args"/> and runs the command.</summary>
    public Task<int> InvokeAsync(string[] args, CancellationToken cancellationToken = default)
    {
        ParseResult parsed = _root.Parse(args);
        if (parsed.Action is ParseErrorAction && parsed.Errors.Count > 0)
        {
            _error.WriteLine($"hmmsim: {parsed.Errors[0].Message.TrimEnd('.')} (see hmmsim --help)");
            return Task.FromResult(ExitUsage);
        }

        return parsed.InvokeAsync(new InvocationConfiguration { Output = _output, Error = _error }, cancellationToken);
    }

    private static WorkloadKind ParseWorkload(ArgumentResult result)
    {
        string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : string.Empty;
        if (Enum.TryParse(text, ignoreCase: true, out WorkloadKind kind) && Enum.IsDefined(kind) && !char.IsDigit(text[0]))
        {
            return kind;
        }

        result.AddError($"--workload '{text}' is not stream, random or stencil");
        return default;
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

    private async Task<int> RunAsync(ParseResult parsed, CancellationToken cancellationToken)
    {
        var defaults = new SimulationOptions();
        var options = new SimulationOptions
        {
            Workload = parsed.GetValue(_workload),
            WorkingSetBytes = parsed.GetValue(_workingSet) ?? defaults.WorkingSetBytes,
            DeviceMemoryBytes = parsed.GetValue(_deviceMemory),
            BatchSize = parsed.GetValue(_batchSize),
            Devices = parsed.GetValue(_devices),
            Seed = parsed.GetValue(_seed),
            MetadataOnly = parsed.GetValue(_metadataOnly),
            Engines = parsed.GetValue(_engines),
            WarpsPerEngine = parsed.GetValue(_warps),
            BytesPerItem = parsed.GetValue(_bytesPerWarpAccess),
            Iterations = parsed.GetValue(_iterations),
        };
        bool json = parsed.GetValue(_json);
        try
        {
            options.Validate();
        }
        catch (HmmException error)
        {
            await _error.WriteLineAsync($"hmmsim: {WithoutErrno(error).TrimEnd('.')} (see hmmsim --help)").ConfigureAwait(false);
            return ExitUsage;
        }

        string? tracePath = parsed.GetValue(_trace);
        TraceWriter? trace = null;
        if (tracePath is not null && !TraceFile.TryCreate(tracePath, out trace, out string? problem))
        {
            await _error.WriteLineAsync($"hmmsim: {problem} (see hmmsim --help)").ConfigureAwait(false);
            return ExitUsage;
        }

        using MetricsCollector? metrics = parsed.GetValue(_metrics) ? new MetricsCollector() : null;
        SimulationReport report;
        try
        {
            await using (trace)
            {
                report = await ProgressDisplay.RunAsync(options, _interactive && !json, cancellationToken, trace).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            await _error.WriteLineAsync("hmmsim: cancelled").ConfigureAwait(false);
            return ExitCancelled;
        }
        catch (Exception error) when (error is HmmException or KernelBugException or IOException)
        {
            await _error.WriteLineAsync($"hmmsim: the simulation failed: {error.Message}").ConfigureAwait(false);
            return ExitFailure;
        }

        if (json)
        {
            await _output.WriteLineAsync(JsonReport.Write(report, metrics?.Stop())).ConfigureAwait(false);
        }
        else
        {
            SummaryRenderer.Write(report, _output, _interactive);
            if (metrics is not null)
            {
                MetricsRenderer.Write(metrics.Stop(), _output, _interactive);
            }
        }

        if (trace is not null)
        {
            // With --json, stdout holds only the JSON document.
            await (json ? _error : _output).WriteLineAsync(TraceFile.Summary(tracePath!, trace.EventsWritten)).ConfigureAwait(false);
        }

        if (report.DataCheck == DataCheckResult.Failed)
        {
            await _error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"hmmsim: data check failed: {report.DataErrors} of {report.PagesChecked} pages held wrong values")).ConfigureAwait(false);
            return ExitFailure;
        }

        return ExitSuccess;
    }

    private static string WithoutErrno(HmmException error)
    {
        string prefix = error.Error + ": ";
        return error.Message.StartsWith(prefix, StringComparison.Ordinal) ? error.Message[prefix.Length..] : error.Message;
    }
}
