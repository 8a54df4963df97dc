using System.Globalization;
using System.Text.Json;
using FluentAssertions;
using Hmm.Cli;
using Hmm.SimGpu.Tests.Tracing;
using Xunit;

namespace Hmm.SimGpu.Tests.Cli;

/// <summary><c>hmmsim --trace FILE</c>.</summary>
public sealed class HmmSimTraceOptionTests : IDisposable
{
    private static readonly string[] s_smallRun = ["--working-set", "24MiB", "--device-memory", "16MiB", "--engines", "4", "--warps", "32"];

    private readonly string _directory = Directory.CreateTempSubdirectory("hmmsim-trace-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task TheRunIsRecordedIntoTheFileAndTheSummarySaysWhereAndHowManyEvents()
    {
        string path = Path.Combine(_directory, "run.hmmtrace");

        (int exit, string output, string error) = await InvokeAsync([.. s_smallRun, "--trace", path]);

        exit.Should().Be(0, error);
        error.Should().BeEmpty();
        List<TraceEvent> events = TraceCapture.Read(await File.ReadAllBytesAsync(path));
        events.Should().NotBeEmpty();
        output.Should().Contain(string.Create(CultureInfo.InvariantCulture, $"Trace: {events.Count:N0} events written to {path}"));
        events.Should().Contain(e => e.Kind == TraceEventKind.FaultBatch).And.Contain(e => e.Kind == TraceEventKind.Evict);
    }

    [Fact]
    public async Task WithJsonTheTraceLineGoesToStderrAndStdoutStaysJson()
    {
        string path = Path.Combine(_directory, "run.hmmtrace");

        (int exit, string output, string error) = await InvokeAsync([.. s_smallRun, "--json", "--trace", path]);

        exit.Should().Be(0, error);
        using JsonDocument document = JsonDocument.Parse(output);
        document.RootElement.GetProperty("faultBatches").GetInt64().Should().Be(
            TraceCapture.Read(await File.ReadAllBytesAsync(path)).Count(e => e.Kind == TraceEventKind.FaultBatch));
        error.Should().StartWith("Trace: ").And.Contain(path);
    }

    [Fact]
    public async Task APathThatCannotBeWrittenGivesOneLineAndExitCodeTwoBeforeAnythingRuns()
    {
        string path = Path.Combine(_directory, "missing", "run.hmmtrace");

        (int exit, string output, string error) = await InvokeAsync([.. s_smallRun, "--trace", path]);

        exit.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().StartWith($"hmmsim: --trace '{path}' cannot be written: ");
        error.TrimEnd().Should().NotContain("\n", "the message is one line");
        File.Exists(path).Should().BeFalse();
    }

    private static async Task<(int Exit, string Output, string Error)> InvokeAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exit = await new HmmSimCommand(output, error, interactive: false).InvokeAsync(args);
        return (exit, output.ToString(), error.ToString());
    }
}
