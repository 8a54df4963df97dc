using System.Text.Json;
using FluentAssertions;
using Hmm.Cli;
using Hmm.SimGpu.Tests.Diagnostics;
using Hmm.Tests.Diagnostics;
using Xunit;

namespace Hmm.SimGpu.Tests.Cli;

/// <summary>
/// hmmsim --metrics. In the metrics collection (run alone): the command's listener is process-wide and would also
/// hear any test running meanwhile, so the metrics printed are this run's only when nothing else runs.
/// </summary>
[Collection(nameof(MetricsCollection))]
public sealed class HmmSimMetricsTests
{
    // Oversubscribed (24 MiB over 16 MiB of device memory): faults, batches, migrations both ways and evictions.
    private static readonly string[] s_smallRun = ["--working-set", "24MiB", "--device-memory", "16MiB", "--engines", "4", "--warps", "32", "--metrics"];

    [Fact]
    public async Task TheJsonMetricsAgreeWithTheReportsCounters()
    {
        (int exit, string output, string error) = await InvokeAsync([.. s_smallRun, "--json"]);

        exit.Should().Be(0, error);
        using JsonDocument document = JsonDocument.Parse(output);
        JsonElement root = document.RootElement;
        JsonElement metrics = root.GetProperty("metrics");
        long Report(string name) => root.GetProperty(name).GetInt64();

        Sum(metrics, "hmm.device.faults").Should().Be(Report("deviceFaults")).And.BeGreaterThan(0);
        Sum(metrics, "hmm.device.fault.batches").Should().Be(Report("faultBatches")).And.BeGreaterThan(0);
        Sum(metrics, "hmm.device.fault.duplicates").Should().Be(Report("duplicatesMerged"));
        Sum(metrics, "hmm.migration.pages", ("hmm.migration.direction", "to_device")).Should().Be(Report("pagesToDevice")).And.BeGreaterThan(0);
        Sum(metrics, "hmm.migration.io", ("hmm.migration.direction", "to_device")).Should().Be(Report("bytesToDevice"));
        Sum(metrics, "hmm.migration.pages", ("hmm.migration.direction", "to_system")).Should().Be(Report("pagesToRam")).And.BeGreaterThan(0);
        Sum(metrics, "hmm.migration.io", ("hmm.migration.direction", "to_system")).Should().Be(Report("bytesToRam"));
        Sum(metrics, "hmm.migration.pages", ("hmm.migration.reason", "eviction")).Should().Be(Report("evictedPages")).And.BeGreaterThan(0);
        Sum(metrics, "hmm.device.evictions").Should().Be(Report("evictedBlocks"));

        JsonElement batchSize = metrics.GetProperty("hmm.device.fault.batch.size");
        batchSize.GetProperty("unit").GetString().Should().Be("{fault}");
        batchSize.GetProperty("type").GetString().Should().Be("histogram");
        JsonElement histogram = batchSize.GetProperty("points").EnumerateArray().Should().ContainSingle().Subject;
        histogram.GetProperty("count").GetInt64().Should().Be(Report("faultBatches"));
        histogram.GetProperty("sum").GetInt64().Should().Be(Report("deviceFaults") - Report("duplicatesMerged"), "the distinct faults of every batch");
        histogram.GetProperty("max").GetInt64().Should().BeLessThanOrEqualTo(root.GetProperty("batchSize").GetInt64());
        metrics.GetProperty("hmm.migration.io").GetProperty("unit").GetString().Should().Be("By");
    }

    [Fact]
    public async Task TheMetricsTableFollowsTheSummaryAndListsEveryInstrument()
    {
        (int exit, string output, string error) = await InvokeAsync(s_smallRun);

        exit.Should().Be(0, error);
        int summary = output.IndexOf("Summary", StringComparison.Ordinal);
        int table = output.IndexOf("Metrics (meter Hmm)", StringComparison.Ordinal);
        summary.Should().BePositive();
        table.Should().BeGreaterThan(summary, "the metrics come after the summary");
        string metrics = output[table..];
        foreach ((string name, string unit, _) in DeviceMetricsTests.Documented)
        {
            metrics.Should().Contain(name).And.Contain(unit);
        }

        // The summary's batch count is the batches counter's row.
        string batches = output.Split('\n').Single(line => line.Contains("hmm.device.fault.batches", StringComparison.Ordinal));
        string summaryLine = output.Split('\n').Single(line => line.Contains("Device faults", StringComparison.Ordinal) && line.Contains("batches", StringComparison.Ordinal));
        string count = summaryLine[(summaryLine.IndexOf("serviced in ", StringComparison.Ordinal) + "serviced in ".Length)..].Split(' ')[0];
        batches.Should().Contain($" {count} ");
    }

    [Fact]
    public async Task WithoutTheOptionTheJsonHasNoMetricsAndHelpListsIt()
    {
        (int exit, string output, string error) = await InvokeAsync([.. s_smallRun[..^1], "--json"]);

        exit.Should().Be(0, error);
        using JsonDocument document = JsonDocument.Parse(output);
        document.RootElement.TryGetProperty("metrics", out _).Should().BeFalse();

        (int helpExit, string help, _) = await InvokeAsync("--help");
        helpExit.Should().Be(0);
        help.Should().Contain("--metrics");
    }

    private static long Sum(JsonElement metrics, string instrument, params (string Key, string Value)[] attributes) =>
        metrics.GetProperty(instrument).GetProperty("points").EnumerateArray()
            .Where(p => attributes.All(a => p.GetProperty("attributes").TryGetProperty(a.Key, out JsonElement v) && v.GetString() == a.Value))
            .Sum(p => p.GetProperty("value").GetInt64());

    private static async Task<(int Exit, string Output, string Error)> InvokeAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exit = await new HmmSimCommand(output, error, interactive: false).InvokeAsync(args);
        return (exit, output.ToString(), error.ToString());
    }
}
