using System.Globalization;
using Hmm.SimGpu;
using Spectre.Console;

namespace Hmm.Cli;

/// <summary>The human-readable summary: a headline, the phases, and the totals.</summary>
internal static class SummaryRenderer
{
    public static void Write(SimulationReport report, TextWriter writer, bool interactive)
    {
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = interactive ? InteractionSupport.Yes : InteractionSupport.No,
        });
        if (!interactive)
        {
            console.Profile.Width = 140;
        }

        SimulationOptions options = report.Options;
        // The headline goes straight to the writer: Spectre would wrap it at the console width.
        string devices = options.Devices == 1 ? "1 GPU" : Invariant($"{options.Devices} GPUs");
        writer.WriteLine(Invariant(
            $"hmmsim: {options.Workload.ToString().ToLowerInvariant()} over {ByteSize.Format(options.WorkingSetBytes)} ({report.WorkingSetPages:N0} pages) on {devices} with {ByteSize.Format(report.DeviceMemoryBytes)} each ({report.Oversubscription * 100:0}% of device memory)"));
        writer.WriteLine(Invariant(
            $"        batch {options.BatchSize}, {options.Engines} engines x {options.WarpsPerEngine} warps, {options.BytesPerItem} B per warp access, {options.Iterations} launch{(options.Iterations == 1 ? "" : "es")} per phase, seed {options.Seed}{(options.MetadataOnly ? ", metadata-only" : "")}"));

        var phases = new Table().Border(TableBorder.Rounded).Title("Phases")
            .AddColumn("Phase").AddColumn(Right("Work")).AddColumn(Right("Simulated")).AddColumn(Right("Device faults"))
            .AddColumn(Right("CPU faults")).AddColumn(Right("To device")).AddColumn(Right("To RAM")).AddColumn(Right("Evicted")).AddColumn(Right("Wall"));
        foreach (SimulationPhaseReport phase in report.Phases)
        {
            phases.AddRow(
                phase.Name, Invariant($"{phase.WorkUnits:N0}"), Time(phase.SimulatedNanoseconds), Invariant($"{phase.DeviceFaults:N0}"),
                Invariant($"{phase.CpuFaults:N0}"), Invariant($"{phase.PagesToDevice:N0}"), Invariant($"{phase.PagesToRam:N0}"),
                Invariant($"{phase.EvictedPages:N0}"), Wall(phase.WallTime));
        }

        console.Write(phases);

        var totals = new Table().Border(TableBorder.Rounded).Title("Summary").AddColumn("Counter").AddColumn("Value");
        totals.AddRow("Device faults", Invariant($"{report.DeviceFaults:N0} raised by the engines, serviced in {report.FaultBatches:N0} batches ({report.DuplicatesMerged:N0} duplicates merged)"));
        totals.AddRow("CPU faults", Invariant($"{report.CpuFaults:N0} on device pages (migrate_to_ram)"));
        totals.AddRow("Migrated to device", Invariant($"{report.PagesToDevice:N0} pages ({ByteSize.Format(report.BytesToDevice)})"));
        totals.AddRow("Migrated to RAM", Invariant($"{report.PagesToRam:N0} pages ({ByteSize.Format(report.BytesToRam)})"));
        totals.AddRow("Evictions", Invariant($"{report.EvictedBlocks:N0} blocks, {report.EvictedPages:N0} pages"));
        totals.AddRow("Pages touched", Invariant($"{report.PagesTouched:N0} distinct buffer pages"));
        totals.AddRow("Simulated time", Time(report.SimulatedNanoseconds));
        totals.AddRow("Effective bandwidth", Invariant($"{report.EffectiveBandwidth / 1e9:0.00} GB/s (bytes migrated / simulated time)"));
        totals.AddRow("Wall time", Invariant($"{Wall(report.WallTime)} ({report.PagesPerWallSecond:N0} pages migrated per second)"));
        totals.AddRow("Data check", report.DataCheck switch
        {
            DataCheckResult.Passed => Invariant($"passed ({report.PagesChecked:N0} pages checked)"),
            DataCheckResult.Failed => Invariant($"FAILED ({report.DataErrors:N0} of {report.PagesChecked:N0} pages wrong)"),
            _ => "skipped (metadata-only)",
        });
        console.Write(totals);
    }

    private static TableColumn Right(string header) => new TableColumn(header).RightAligned();

    private static string Time(long nanoseconds) => nanoseconds switch
    {
        >= 1_000_000_000 => Invariant($"{nanoseconds / 1e9:0.000} s"),
        >= 1_000_000 => Invariant($"{nanoseconds / 1e6:0.000} ms"),
        _ => Invariant($"{nanoseconds / 1e3:0.000} µs"),
    };

    private static string Wall(TimeSpan time) => Invariant($"{time.TotalSeconds:0.000} s");

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
