using System.CommandLine;
using Hmm.Cli.Workloads;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace Hmm.Cli;

/// <summary>hmmsim: runs a workload on the simulated memory system and prints what happened.</summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        var seed = new Option<int>("--seed") { Description = "Seed for every random choice; the same seed gives the same report.", DefaultValueFactory = _ => 42 };
        var ramMiB = new Option<int>("--ram-mib") { Description = "System RAM in MiB (a multiple of 2).", DefaultValueFactory = _ => 256 };
        var deviceMiB = new Option<int>("--device-mib") { Description = "Device-private memory in MiB (a multiple of 2).", DefaultValueFactory = _ => 64 };
        var pages = new Option<int>("--pages") { Description = "Pages the workload touches.", DefaultValueFactory = _ => 4096 };
        var verbose = new Option<bool>("--verbose") { Description = "Log the library's events to the console." };

        var root = new RootCommand("hmmsim: drive the Hmm simulator with a built-in workload and report what happened.")
        {
            seed, ramMiB, deviceMiB, pages, verbose,
        };
        root.SetAction(result =>
        {
            var settings = new WorkloadSettings(
                result.GetValue(seed), result.GetValue(ramMiB), result.GetValue(deviceMiB), result.GetValue(pages));
            using ILoggerFactory logging = LoggerFactory.Create(builder =>
            {
                builder.SetMinimumLevel(result.GetValue(verbose) ? LogLevel.Information : LogLevel.Warning);
                builder.AddSimpleConsole(o => o.SingleLine = true);
            });
            try
            {
                var report = new Report(AnsiConsole.Console);
                DefaultWorkload.Run(settings, logging.CreateLogger("Hmm"), report);
                report.Print();
                return 0;
            }
            catch (HmmException error)
            {
                AnsiConsole.MarkupLineInterpolated(System.Globalization.CultureInfo.InvariantCulture, $"[red]hmmsim failed:[/] {error.Message}");
                return 1;
            }
        });

        return root.Parse(args).Invoke();
    }
}
