using System.Text.Json;
using FluentAssertions;
using Hmm.Cli;
using Xunit;

namespace Hmm.SimGpu.Tests.Cli;

public sealed class HmmSimCommandTests
{
    private static readonly string[] s_smallRun = ["--working-set", "24MiB", "--device-memory", "16MiB", "--engines", "4", "--warps", "32"];

    [Fact]
    public async Task TheDefaultRunExitsZeroAndPrintsTheSummary()
    {
        (int exit, string output, string error) = await InvokeAsync();

        exit.Should().Be(0, error);
        error.Should().BeEmpty();
        output.Should().StartWith("hmmsim: stream over 96 MiB (24,576 pages) on 1 GPU with 64 MiB each (150% of device memory)");
        output.Should().Contain("batch 256, 8 engines x 64 warps, 512 B per warp access, 1 launch per phase, seed 42");
        foreach (string expected in new[]
        {
            "cpu-init", "gpu-fit", "cpu-readback-fit", "gpu-oversubscribed", "cpu-readback", "Device faults", "CPU faults",
            "Migrated to device", "Migrated to RAM", "Evictions", "Simulated time", "Effective bandwidth", "Wall time", "passed",
        })
        {
            output.Should().Contain(expected);
        }
    }

    [Fact]
    public async Task JsonOutputParsesAndCarriesEveryCounter()
    {
        (int exit, string output, string error) = await InvokeAsync([.. s_smallRun, "--workload", "stencil", "--json"]);

        exit.Should().Be(0, error);
        using JsonDocument document = JsonDocument.Parse(output);
        JsonElement root = document.RootElement;
        root.GetProperty("workload").GetString().Should().Be("stencil");
        root.GetProperty("workingSetBytes").GetUInt64().Should().Be(24UL << 20);
        root.GetProperty("deviceMemoryBytes").GetUInt64().Should().Be(16UL << 20);
        root.GetProperty("dataCheck").GetString().Should().Be("passed");
        root.GetProperty("bytesPerItem").GetInt32().Should().Be(512);
        root.GetProperty("duplicatesMerged").GetInt64().Should().BeGreaterThan(0);
        root.GetProperty("evictedPages").GetInt64().Should().BeGreaterThan(0);
        root.GetProperty("bytesToDevice").GetInt64().Should().Be(root.GetProperty("pagesToDevice").GetInt64() * 4096);
        foreach (string name in new[]
        {
            "deviceFaults", "faultBatches", "duplicatesMerged", "cpuFaults", "pagesToRam", "bytesToRam", "evictedBlocks",
            "simulatedNanoseconds", "effectiveBandwidthBytesPerSecond", "wallTimeSeconds", "pagesPerWallSecond", "seed", "metadataOnly",
        })
        {
            root.TryGetProperty(name, out _).Should().BeTrue(name);
        }

        root.GetProperty("phases").GetArrayLength().Should().Be(5);
        root.GetProperty("phases")[3].GetProperty("name").GetString().Should().Be("gpu-oversubscribed");
        root.GetProperty("phases")[3].GetProperty("evictedPages").GetInt64().Should().Be(root.GetProperty("evictedPages").GetInt64());
    }

    [Theory]
    [InlineData("--workload", "zigzag", "--workload 'zigzag' is not stream, random or stencil")]
    [InlineData("--working-set", "12XB", "--working-set '12XB' is not a size")]
    [InlineData("--working-set", "1000", "working set 1000 bytes must be a multiple of 4 KiB")]
    [InlineData("--device-memory", "3MiB", "device memory 3145728 bytes must be a multiple of 2 MiB")]
    [InlineData("--batch-size", "0", "batch size 0 must be from 1 to 8192")]
    [InlineData("--devices", "17", "devices 17 must be from 1 to 16")]
    [InlineData("--bytes-per-warp-access", "100", "bytes per item 100 must be a power of two from 64 to 4096")]
    [InlineData("--bytes-per-warp-access", "8192", "bytes per item 8192 must be a power of two from 64 to 4096")]
    [InlineData("--seed", "minus-one", "minus-one")]
    [InlineData("--frobnicate", "1", "--frobnicate")]
    public async Task ABadArgumentGivesOneLineOnStderrAndExitCodeTwo(string option, string value, string message)
    {
        (int exit, string output, string error) = await InvokeAsync([option, value]);

        exit.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().Contain(message);
        error.TrimEnd().Should().NotContain("\n", "the message is one line");
        error.Should().StartWith("hmmsim: ");
    }

    [Fact]
    public async Task HelpExplainsEveryOption()
    {
        (int exit, string output, _) = await InvokeAsync(["--help"]);

        exit.Should().Be(0);
        foreach (string option in new[]
        {
            "--workload", "--working-set", "--device-memory", "--batch-size", "--devices", "--seed", "--metadata-only",
            "--engines", "--warps", "--bytes-per-warp-access", "--iterations", "--json", "--help",
        })
        {
            output.Should().Contain(option);
        }

        output.Should().Contain("stream|random|stencil");
    }

    [Fact]
    public async Task AMetadataOnlyRunSaysTheCheckWasSkipped()
    {
        (int exit, string output, string error) = await InvokeAsync([.. s_smallRun, "--metadata-only", "--workload", "random"]);

        exit.Should().Be(0, error);
        output.Should().Contain("metadata-only").And.Contain("skipped");
    }

    [Fact]
    public async Task ACancelledRunExitsWith130AndSaysSo()
    {
        using var cancellation = new CancellationTokenSource();
        await cancellation.CancelAsync();

        (int exit, string output, string error) = await InvokeAsync(cancellation.Token, s_smallRun);

        exit.Should().Be(130);
        output.Should().BeEmpty();
        error.Should().Be("hmmsim: cancelled" + Environment.NewLine);
    }

    private static Task<(int Exit, string Output, string Error)> InvokeAsync(params string[] args) => InvokeAsync(CancellationToken.None, args);

    private static async Task<(int Exit, string Output, string Error)> InvokeAsync(CancellationToken cancellationToken, params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exit = await new HmmSimCommand(output, error, interactive: false).InvokeAsync(args, cancellationToken);
        return (exit, output.ToString(), error.ToString());
    }
}
