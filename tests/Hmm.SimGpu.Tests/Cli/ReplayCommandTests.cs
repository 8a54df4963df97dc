using System.Text.Json;
using FluentAssertions;
using Hmm.Cli;
using Hmm.SimGpu;
using Xunit;

namespace Hmm.SimGpu.Tests.Cli;

public sealed class ReplayCommandTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("hmmsim-replay-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task AReplayAsRecordedPrintsTheRunsSummaryAfterSayingWhatItReplays()
    {
        string file = Record();

        (int exit, string output, string error) = await InvokeAsync("replay", file);

        exit.Should().Be(0, error);
        error.Should().BeEmpty();
        output.Should().StartWith("hmmsim: replay of run.hmmtrace (").And.Contain(" recorded accesses) as recorded");
        output.Should().Contain("hmmsim: stream over 24 MiB (6,144 pages) on 1 GPU with 16 MiB each");
        output.Should().Contain("gpu-oversubscribed").And.Contain("passed");
    }

    [Fact]
    public async Task TheJsonOfAChangedReplayNamesTheTraceAndTheChanges()
    {
        string file = Record();

        (int exit, string output, string error) = await InvokeAsync("replay", file, "--batch-size", "32", "--warps", "16", "--far-fault-latency", "90000", "--json");

        exit.Should().Be(0, error);
        using JsonDocument document = JsonDocument.Parse(output);
        JsonElement root = document.RootElement;
        root.GetProperty("batchSize").GetInt32().Should().Be(32);
        root.GetProperty("warpsPerEngine").GetInt32().Should().Be(16);
        root.GetProperty("dataCheck").GetString().Should().Be("passed");
        JsonElement replay = root.GetProperty("replay");
        replay.GetProperty("file").GetString().Should().Be(file);
        replay.GetProperty("changes").EnumerateArray().Select(c => c.GetString()).Should().Equal("batch size 32", "16 warps per engine", "far-fault latency 90000 ns");
        replay.GetProperty("accessesReplayed").GetInt64().Should().BeGreaterThan(0);
    }

    [Fact]
    public async Task AReplayCanBeTracedAndThatTraceReplaysToTheSameReport()
    {
        string file = Record();
        string again = Path.Combine(_directory, "again.hmmtrace");

        (int exit, string first, string error) = await InvokeAsync("replay", file, "--device-memory", "32MiB", "--json", "--trace", again);
        (int secondExit, string second, _) = await InvokeAsync("replay", again, "--json");

        exit.Should().Be(0, error);
        secondExit.Should().Be(0);
        Counters(second).Should().Be(Counters(first));
    }

    [Theory]
    [InlineData("--batch-size", "0", "batch size 0 must be from 1 to 8192")]
    [InlineData("--device-memory", "3MiB", "device memory")]
    [InlineData("--device-memory", "lots", "--device-memory 'lots' is not a size")]
    [InlineData("--pcie-bandwidth", "-1", "--pcie-bandwidth positive")]
    [InlineData("--working-set", "8MiB", "--working-set")]
    public async Task ABadOptionExitsTwoWithOneLine(string option, string value, string message)
    {
        string file = Record();

        (int exit, string output, string error) = await InvokeAsync("replay", file, option, value);

        exit.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().StartWith("hmmsim: ").And.Contain(message);
        error.TrimEnd().Split('\n').Should().ContainSingle();
    }

    [Fact]
    public async Task AMissingOrInvalidTraceExitsTwoNamingTheProblem()
    {
        string notATrace = Path.Combine(_directory, "notes.txt");
        await File.WriteAllTextAsync(notATrace, "not a trace, but long enough to hold a header of sixty-four bytes, surely");

        (int missingExit, _, string missing) = await InvokeAsync("replay", Path.Combine(_directory, "absent.hmmtrace"));
        (int invalidExit, _, string invalid) = await InvokeAsync("replay", notATrace);

        missingExit.Should().Be(2);
        missing.Should().StartWith("hmmsim: ");
        invalidExit.Should().Be(2);
        invalid.Should().StartWith("hmmsim: cannot replay notes.txt: invalid trace at byte offset 0");
    }

    private string Record()
    {
        string file = Path.Combine(_directory, "run.hmmtrace");
        using TraceWriter writer = TraceWriter.Create(File.Create(file));
        Simulation.Run(new SimulationOptions { WorkingSetBytes = 24UL << 20, DeviceMemoryBytes = 16UL << 20, Engines = 4, WarpsPerEngine = 32 }, trace: writer);
        return file;
    }

    private static string Counters(string json)
    {
        using JsonDocument document = JsonDocument.Parse(json);
        JsonElement root = document.RootElement;
        return string.Join(' ', new[] { "deviceFaults", "faultBatches", "pagesToDevice", "pagesToRam", "evictedPages", "simulatedNanoseconds" }
            .Select(name => root.GetProperty(name).GetInt64()));
    }

    private static async Task<(int Exit, string Output, string Error)> InvokeAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exit = await new HmmSimCommand(output, error, interactive: false).InvokeAsync(args);
        return (exit, output.ToString(), error.ToString());
    }
}
