using System.Runtime.CompilerServices;
using Hmm.SimGpu;
using Spectre.Console;

namespace Hmm.Cli;

/// <summary>
/// Runs the simulation on a worker thread; when asked to show progress and the run is still going after a second,
/// draws a Spectre progress bar (phase, work units, elapsed time) that follows the run until it ends.
/// </summary>
internal static class ProgressDisplay
{
    private static readonly TimeSpan s_quietStart = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan s_refresh = TimeSpan.FromMilliseconds(100);

    public static async Task<SimulationReport> RunAsync(SimulationOptions options, bool show, CancellationToken cancellationToken, TraceWriter? trace = null)
    {
        var latest = new LatestProgress();
        Task<SimulationReport> run = Task.Run(() => Simulation.Run(options, show ? latest : null, trace, cancellationToken), cancellationToken);
        if (!show)
        {
            return await run.ConfigureAwait(false);
        }

        await Task.WhenAny(run, Task.Delay(s_quietStart, CancellationToken.None)).ConfigureAwait(false);
        if (run.IsCompleted)
        {
            return await run.ConfigureAwait(false);
        }

        await AnsiConsole.Progress()
            .AutoClear(true)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async context =>
            {
                ProgressTask task = context.AddTask("starting", maxValue: 1);
                while (!run.IsCompleted)
                {
                    if (latest.Value is { Total: > 0 } progress)
                    {
                        task.MaxValue = progress.Total;
                        task.Value = progress.Completed;
                        task.Description = progress.Phase;
                    }

                    await Task.WhenAny(run, Task.Delay(s_refresh, CancellationToken.None)).ConfigureAwait(false);
                }

                task.Value = task.MaxValue;
            }).ConfigureAwait(false);
        return await run.ConfigureAwait(false);
    }

    /// <summary>Keeps the last progress the run reported, for the display thread to poll.</summary>
    private sealed class LatestProgress : IProgress<SimulationProgress>
    {
        private StrongBox<SimulationProgress>? _latest;

        public SimulationProgress? Value => Volatile.Read(ref _latest)?.Value;

        public void Report(SimulationProgress value) => Volatile.Write(ref _latest, new StrongBox<SimulationProgress>(value));
    }
}
