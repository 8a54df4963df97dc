using System.Globalization;
using System.Text;
using System.Text.Json;
using FluentAssertions;
using Hmm.Cli;
using Xunit;

namespace Hmm.SimGpu.Tests.Cli.Tracing;

public sealed class TraceCommandTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("hmm-trace-tools-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task PerfettoExportHasATrackPerCpuThreadAndPerDeviceEngine()
    {
        (string trace, int threadA, int threadB) = await WriteSyntheticAsync();

        (int exit, string output, string error) = await InvokeAsync("trace", "export", trace, "--format", "perfetto");

        exit.Should().Be(0, error);
        output.Should().Contain("trace events").And.Contain(Path.ChangeExtension(trace, ".json"));
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(Path.ChangeExtension(trace, ".json")));
        List<JsonElement> events = [.. document.RootElement.GetProperty("traceEvents").EnumerateArray()];
        var threads = events.Where(e => Phase(e) == "M" && e.GetProperty("name").GetString() == "thread_name")
            .ToDictionary(e => e.GetProperty("args").GetProperty("name").GetString()!, e => (Pid: e.GetProperty("pid").GetInt32(), Tid: e.GetProperty("tid").GetInt32()));
        threads.Keys.Should().BeEquivalentTo(
            $"CPU thread {threadA}", $"CPU thread {threadB}",
            "gpu0 fault unit", "gpu0 copy engine", "gpu0 copy engine 1", "gpu1 fault unit", "gpu1 copy engine", "gpu1 copy engine 1");
        threads[$"CPU thread {threadA}"].Should().Be((1, threadA));
        threads["gpu0 fault unit"].Pid.Should().NotBe(threads["gpu1 fault unit"].Pid, "each device is a process of its own");
        events.Where(e => Phase(e) == "M" && e.GetProperty("name").GetString() == "process_name")
            .Select(e => e.GetProperty("args").GetProperty("name").GetString()).Should().BeEquivalentTo("CPU", "gpu0", "gpu1");

        // Every slice, instant and flow sits on a named track; every migrate and CPU-side event on its emitting thread.
        foreach (JsonElement e in events.Where(e => Phase(e) is "X" or "i" or "s" or "f"))
        {
            threads.Values.Should().Contain((e.GetProperty("pid").GetInt32(), e.GetProperty("tid").GetInt32()));
        }

        events.Where(e => e.GetProperty("name").GetString() == "migrate_vma_setup")
            .Select(e => e.GetProperty("tid").GetInt32()).Distinct().Should().BeEquivalentTo([threadA, threadB]);
        document.RootElement.GetProperty("otherData").GetProperty("traceEvents").GetInt64().Should().Be(46);
    }

    [Fact]
    public async Task PerfettoExportHasDurationsInstantsCountersAndDecodedArgs()
    {
        (string trace, _, _) = await WriteSyntheticAsync();
        string json = Path.Combine(_directory, "out.json");

        (int exit, _, string error) = await InvokeAsync("trace", "export", trace, "--format", "perfetto", "-o", json);

        exit.Should().Be(0, error);
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(json));
        List<JsonElement> events = [.. document.RootElement.GetProperty("traceEvents").EnumerateArray()];
        List<JsonElement> batches = [.. events.Where(e => Phase(e) == "X" && e.GetProperty("name").GetString() == "fault batch")];
        batches.Should().HaveCount(4);
        batches[0].GetProperty("ts").GetDouble().Should().Be(2.0);
        batches[0].GetProperty("dur").GetDouble().Should().BeApproximately(2.096, 1e-9);
        batches[0].GetProperty("args").GetProperty("faults").GetInt64().Should().Be(3);
        batches[0].GetProperty("args").GetProperty("duplicates_merged").GetInt64().Should().Be(1);
        JsonElement copy = events.First(e => Phase(e) == "X" && e.GetProperty("name").GetString() == "copy");
        copy.GetProperty("ts").GetDouble().Should().Be(2.7);
        copy.GetProperty("dur").GetDouble().Should().BeApproximately(0.5, 1e-9);
        copy.GetProperty("args").GetProperty("bytes").GetInt64().Should().Be(8192);
        copy.GetProperty("args").GetProperty("direction").GetString().Should().Be("HostToDevice");

        JsonElement fault = events.First(e => e.GetProperty("name").GetString() == "device fault");
        fault.GetProperty("args").GetProperty("address").GetString().Should().Be("0x10000");
        fault.GetProperty("args").GetProperty("access").GetString().Should().Be("Read");
        fault.GetProperty("ts").GetRawText().Should().Be("1.023", "a fault is the nanosecond up to its time, written as exact decimal microseconds");
        fault.GetProperty("dur").GetRawText().Should().Be("0.001");
        batches[0].GetProperty("dur").GetRawText().Should().Be("2.096");
        JsonElement tlb = events.First(e => e.GetProperty("name").GetString() == "TLB invalidate");
        Phase(tlb).Should().Be("i");
        tlb.GetProperty("s").GetString().Should().Be("t");
        tlb.GetProperty("args").GetProperty("end").GetString().Should().Be("0x11000");
        foreach ((string instant, int count) in new[]
        {
            ("CPU fault", 2), ("hmm_range_fault", 2), ("invalidate", 2), ("migrate_vma_pages", 2), ("migrate_vma_finalize", 6), ("evict", 2),
            ("device alloc", 2), ("device free", 2), ("pagemap kill", 2),
        })
        {
            events.Where(e => e.GetProperty("name").GetString() == instant).Should().HaveCount(count, instant).And.OnlyContain(e => Phase(e) == "i", instant);
        }

        List<JsonElement> counters = [.. events.Where(e => Phase(e) == "C")];
        counters.Where(e => e.GetProperty("name").GetString() == "gpu0 memory in use")
            .Select(e => e.GetProperty("args").GetProperty("pages").GetInt64()).Should().Equal(512, 511);
        counters.Where(e => e.GetProperty("name").GetString() == "gpu1 pages resident")
            .Select(e => e.GetProperty("args").GetProperty("pages").GetInt64()).Should().Equal(2, 3, 2);
    }

    [Fact]
    public async Task PerfettoFlowsLinkEachFaultToItsBatchAndEachBatchToTheMigrationsInItsWindow()
    {
        (string trace, _, _) = await WriteSyntheticAsync();

        (int exit, string output, string error) = await InvokeAsync("trace", "export", trace, "--format", "perfetto");

        exit.Should().Be(0, error);
        output.Should().Contain("8 fault-to-batch and 6 batch-to-migration flows");
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(Path.ChangeExtension(trace, ".json")));
        List<JsonElement> events = [.. document.RootElement.GetProperty("traceEvents").EnumerateArray()];
        var starts = events.Where(e => Phase(e) == "s").ToDictionary(e => e.GetProperty("id").GetInt64());
        var ends = events.Where(e => Phase(e) == "f").ToDictionary(e => e.GetProperty("id").GetInt64());
        starts.Keys.Should().BeEquivalentTo(ends.Keys, "every flow starts and ends");
        starts.Should().HaveCount(14);

        var faultLatencies = new List<double>();
        foreach ((long id, JsonElement start) in starts)
        {
            JsonElement end = ends[id];
            end.GetProperty("bp").GetString().Should().Be("e");
            start.GetProperty("name").GetString().Should().Be(end.GetProperty("name").GetString());
            if (start.GetProperty("name").GetString() == "fault to batch")
            {
                JsonElement fault = SliceAt(events, start, "device fault");
                JsonElement batch = SliceAt(events, end, "fault batch");
                fault.GetProperty("pid").GetInt32().Should().Be(batch.GetProperty("pid").GetInt32(), "a fault is serviced by a batch of its own device");
                faultLatencies.Add(batch.GetProperty("args").GetProperty("end_ns").GetInt64() - fault.GetProperty("args").GetProperty("virtual_ns").GetInt64());
            }
            else
            {
                start.GetProperty("name").GetString().Should().Be("batch to migration");
                JsonElement batch = SliceAt(events, start, "fault batch");
                JsonElement migration = SliceAt(events, end, "migrate_vma_setup");
                long at = migration.GetProperty("args").GetProperty("virtual_ns").GetInt64();
                at.Should().BeInRange(batch.GetProperty("args").GetProperty("virtual_ns").GetInt64(), batch.GetProperty("args").GetProperty("end_ns").GetInt64());
                migration.GetProperty("args").GetProperty("device").GetInt32().Should().Be(batch.GetProperty("pid").GetInt32() - 2);
            }
        }

        faultLatencies.Should().BeEquivalentTo(new double[] { 3072, 2560, 2496, 4096, 3072, 2560, 2496, 4096 });
    }

    [Fact]
    public async Task CsvExportHasAHeaderAndOneQuotedRowPerEvent()
    {
        (string trace, int threadA, _) = await WriteSyntheticAsync();
        string csv = Path.Combine(_directory, "events.csv");

        (int exit, string output, string error) = await InvokeAsync("trace", "export", trace, "--format", "csv", "-o", csv);

        exit.Should().Be(0, error);
        output.Should().Contain("wrote 46 rows");
        string text = File.ReadAllText(csv);
        text.Should().EndWith("\r\n");
        List<string[]> rows = ParseCsv(text);
        rows.Should().HaveCount(47);
        rows[0].Should().Equal("sequence", "kind", "virtual_ns", "end_ns", "wall_ticks", "device", "engine", "thread", "flags", "arg", "a", "b", "c", "detail");
        rows.Skip(1).Should().OnlyContain(r => r.Length == 14);
        rows.Skip(1).Select(r => long.Parse(r[0], CultureInfo.InvariantCulture)).Should().Equal(Enumerable.Range(0, 46).Select(i => (long)i));

        string[] cpuFault = rows.First(r => r[1] == "CpuFault");
        cpuFault[6].Should().Be("cpu");
        cpuFault[7].Should().Be(threadA.ToString(CultureInfo.InvariantCulture));
        cpuFault[10].Should().Be("0x30000");
        cpuFault[13].Should().Be("address=0x30000; flags=Write, Remote; result=None");
        text.Should().Contain("\"address=0x30000; flags=Write, Remote; result=None\"", "a field holding a comma is quoted");
        string[] batch = rows.First(r => r[1] == "FaultBatch");
        batch[2].Should().Be("2000");
        batch[3].Should().Be("4096");
        batch[6].Should().Be("fault-unit");
        rows.First(r => r[1] == "Evict")[3].Should().BeEmpty("only batches and copies have an end");
    }

    [Fact]
    public async Task StatsJsonCountsEveryKindTheTotalsAndThePercentiles()
    {
        (string trace, _, _) = await WriteSyntheticAsync();

        (int exit, string output, string error) = await InvokeAsync("trace", "stats", trace, "--json");

        exit.Should().Be(0, error);
        using JsonDocument document = JsonDocument.Parse(output);
        JsonElement root = document.RootElement;
        root.GetProperty("events").GetInt64().Should().Be(46);
        JsonElement kinds = root.GetProperty("kinds");
        kinds.GetProperty("deviceFault").GetInt64().Should().Be(8);
        kinds.GetProperty("migrateSetup").GetInt64().Should().Be(6);
        kinds.GetProperty("pagemapLifetime").GetInt64().Should().Be(2);
        kinds.GetProperty("other").GetInt64().Should().Be(0);
        kinds.GetProperty("deviceAccess").GetInt64().Should().Be(0, "the synthetic trace records no access stream");
        kinds.EnumerateObject().Should().HaveCount(20, "every kind of the format by name, and other");
        root.GetProperty("devices").GetInt32().Should().Be(2);
        root.GetProperty("simulatedNanoseconds").GetInt64().Should().Be(10000);
        root.GetProperty("deviceFaults").GetInt64().Should().Be(8);
        root.GetProperty("unservicedFaults").GetInt64().Should().Be(0);
        root.GetProperty("faultBatches").GetInt64().Should().Be(4);
        root.GetProperty("faultsDelivered").GetInt64().Should().Be(8);
        root.GetProperty("duplicatesMerged").GetInt64().Should().Be(2);
        root.GetProperty("cpuFaults").GetInt64().Should().Be(2);
        root.GetProperty("pagesToDevice").GetInt64().Should().Be(6);
        root.GetProperty("bytesToDevice").GetInt64().Should().Be(6 * 4096);
        root.GetProperty("pagesToHost").GetInt64().Should().Be(2);
        root.GetProperty("evictions").GetInt64().Should().Be(2);
        root.GetProperty("evictedPages").GetInt64().Should().Be(2);
        root.GetProperty("copies").GetInt64().Should().Be(4);
        root.GetProperty("copyBytesToDevice").GetInt64().Should().Be(4 * 4096);
        root.GetProperty("copyBytesToHost").GetInt64().Should().Be(2 * 4096);
        root.GetProperty("peakDevicePagesInUse").GetInt64().Should().Be(512);
        root.GetProperty("rangeFaultRetries").GetInt64().Should().Be(2);

        JsonElement sizes = root.GetProperty("batchSizes");
        sizes.GetProperty("count").GetInt64().Should().Be(4);
        sizes.GetProperty("p50").GetInt64().Should().Be(1);
        sizes.GetProperty("p90").GetInt64().Should().Be(3);
        sizes.GetProperty("max").GetInt64().Should().Be(3);

        // Latencies 2496, 2496, 2560, 2560, 3072, 3072, 4096, 4096 (nearest rank).
        JsonElement latency = root.GetProperty("faultLatencyNanoseconds");
        latency.GetProperty("count").GetInt64().Should().Be(8);
        latency.GetProperty("min").GetInt64().Should().Be(2496);
        latency.GetProperty("p50").GetInt64().Should().Be(2560);
        latency.GetProperty("p90").GetInt64().Should().Be(4096);
        latency.GetProperty("p99").GetInt64().Should().Be(4096);
        latency.GetProperty("max").GetInt64().Should().Be(4096);
        latency.GetProperty("mean").GetDouble().Should().Be(3056);
        latency.GetProperty("buckets").EnumerateArray().Select(b => (b.GetProperty("from").GetInt64(), b.GetProperty("count").GetInt64()))
            .Should().Equal((2048L, 6L), (4096L, 2L));
    }

    [Fact]
    public async Task StatsTextShowsTheKindsTotalsAndHistograms()
    {
        (string trace, _, _) = await WriteSyntheticAsync();

        (int exit, string output, string error) = await InvokeAsync("trace", "stats", trace);

        exit.Should().Be(0, error);
        foreach (string expected in new[]
        {
            "Events by kind", "DeviceFault", "PagemapLifetime", "other", "Totals", "Device faults", "8 (0 not serviced by a batch in the trace)",
            "4 delivering 8 faults (2 duplicates merged)", "6 pages (24 KiB)", "Batch sizes (faults per batch)", "Fault latency",
            "p50 2,560 ns, p90 4,096 ns, p99 4,096 ns, max 4,096 ns",
        })
        {
            output.Should().Contain(expected);
        }
    }

    [Fact]
    public async Task PlotWritesThePngChartsAndAnIndexThatShowsThemWithTheStatistics()
    {
        (string trace, _, _) = await WriteSyntheticAsync();
        string plots = Path.Combine(_directory, "plots");

        (int exit, string output, string error) = await InvokeAsync("trace", "plot", trace, "-o", plots);

        exit.Should().Be(0, error);
        output.Should().Contain("index.html");
        string[] images = ["run-faults.png", "run-migrated.png", "run-residency.png"];
        foreach (string image in images)
        {
            byte[] bytes = File.ReadAllBytes(Path.Combine(plots, image));
            bytes.Length.Should().BeGreaterThan(1000, image);
            bytes.Take(8).Should().Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, "a PNG signature");
        }

        string index = File.ReadAllText(Path.Combine(plots, "index.html"));
        foreach (string image in images)
        {
            index.Should().Contain($"<img src=\"{image}\"");
        }

        index.Should().Contain("Device faults").And.Contain("p50 2,560 ns").And.NotContain("comparison");
        Directory.GetFiles(plots).Should().HaveCount(4);
    }

    [Fact]
    public async Task PlotOfSeveralTracesAddsComparisonChartsAndWritesSvgWhenAsked()
    {
        (string first, _, _) = await WriteSyntheticAsync("first.hmmtrace");
        (TraceEvent[] events, _, _) = SyntheticTrace.Build();
        string second = Path.Combine(_directory, "second.hmmtrace");
        await SyntheticTrace.WriteAsync(second, events.Where(e => e.Device == 0));
        string plots = Path.Combine(_directory, "compare");

        (int exit, _, string error) = await InvokeAsync("trace", "plot", first, second, "-o", plots, "--image-format", "svg");

        exit.Should().Be(0, error);
        string index = File.ReadAllText(Path.Combine(plots, "index.html"));
        foreach (string image in new[]
        {
            "comparison-faults.svg", "comparison-migrated.svg", "comparison-evictions.svg", "comparison-time.svg",
            "first-faults.svg", "first-migrated.svg", "first-residency.svg", "second-faults.svg", "second-migrated.svg", "second-residency.svg",
        })
        {
            string svg = File.ReadAllText(Path.Combine(plots, image));
            svg.Should().Contain("<svg", image).And.Contain("</svg>", image);
            index.Should().Contain($"<img src=\"{image}\"");
        }

        File.ReadAllText(Path.Combine(plots, "comparison-faults.svg")).Should().Contain("first").And.Contain("second");
        index.Should().Contain("<h2>first</h2>").And.Contain("<h2>second</h2>");
    }

    [Fact]
    public async Task ARecordedRunExportsToValidJsonAndItsStatsAgreeWithTheRunsReport()
    {
        string trace = Path.Combine(_directory, "recorded.hmmtrace");
        (int runExit, string report, string runError) = await InvokeAsync(
            "--working-set", "8MiB", "--device-memory", "16MiB", "--engines", "2", "--warps", "16", "--json", "--trace", trace);
        runExit.Should().Be(0, runError);
        using JsonDocument run = JsonDocument.Parse(report);

        (int statsExit, string stats, string statsError) = await InvokeAsync("trace", "stats", trace, "--json");
        (int exportExit, _, string exportError) = await InvokeAsync("trace", "export", trace, "--format", "perfetto");

        statsExit.Should().Be(0, statsError);
        exportExit.Should().Be(0, exportError);
        using JsonDocument counted = JsonDocument.Parse(stats);
        JsonElement expected = run.RootElement;
        JsonElement actual = counted.RootElement;
        actual.GetProperty("deviceFaults").GetInt64().Should().Be(expected.GetProperty("deviceFaults").GetInt64());
        actual.GetProperty("faultBatches").GetInt64().Should().Be(expected.GetProperty("faultBatches").GetInt64());
        actual.GetProperty("duplicatesMerged").GetInt64().Should().Be(expected.GetProperty("duplicatesMerged").GetInt64());
        actual.GetProperty("pagesToDevice").GetInt64().Should().Be(expected.GetProperty("pagesToDevice").GetInt64());
        actual.GetProperty("unservicedFaults").GetInt64().Should().Be(0);
        actual.GetProperty("faultLatencyNanoseconds").GetProperty("count").GetInt64().Should().Be(actual.GetProperty("deviceFaults").GetInt64());
        using JsonDocument exported = JsonDocument.Parse(File.ReadAllBytes(Path.ChangeExtension(trace, ".json")));
        exported.RootElement.GetProperty("traceEvents").EnumerateArray()
            .Count(e => Phase(e) == "s" && e.GetProperty("name").GetString() == "fault to batch")
            .Should().Be(actual.GetProperty("deviceFaults").GetInt32(), "every device fault is linked to the batch that serviced it");

        // The recorded access stream is counted by kind, in the CSV, and left off the timeline, never "other".
        JsonElement kinds = actual.GetProperty("kinds");
        long stream = kinds.GetProperty("runConfiguration").GetInt64() + kinds.GetProperty("phase").GetInt64()
            + kinds.GetProperty("kernelLaunch").GetInt64() + kinds.GetProperty("deviceAccess").GetInt64() + kinds.GetProperty("cpuAccess").GetInt64();
        kinds.GetProperty("deviceAccess").GetInt64().Should().BeGreaterThan(0);
        kinds.GetProperty("other").GetInt64().Should().Be(0);
        exported.RootElement.GetProperty("otherData").GetProperty("skippedEvents").GetInt64().Should().Be(stream);
        (int csvExit, _, string csvError) = await InvokeAsync("trace", "export", trace, "--format", "csv");
        csvExit.Should().Be(0, csvError);
        File.ReadLines(Path.ChangeExtension(trace, ".csv")).Count(line => line.Contains(",DeviceAccess,", StringComparison.Ordinal))
            .Should().Be((int)kinds.GetProperty("deviceAccess").GetInt64());
    }

    [Fact]
    public async Task AnEmptyTraceGivesZeroStatsAValidExportAndPlots()
    {
        string trace = Path.Combine(_directory, "empty.hmmtrace");
        await SyntheticTrace.WriteAsync(trace, []);

        (int statsExit, string stats, string statsError) = await InvokeAsync("trace", "stats", trace, "--json");
        (int exportExit, _, string exportError) = await InvokeAsync("trace", "export", trace, "--format", "perfetto");
        (int plotExit, _, string plotError) = await InvokeAsync("trace", "plot", trace);

        statsExit.Should().Be(0, statsError);
        exportExit.Should().Be(0, exportError);
        plotExit.Should().Be(0, plotError);
        using JsonDocument counted = JsonDocument.Parse(stats);
        counted.RootElement.GetProperty("events").GetInt64().Should().Be(0);
        counted.RootElement.GetProperty("faultLatencyNanoseconds").GetProperty("p99").GetInt64().Should().Be(0);
        using JsonDocument exported = JsonDocument.Parse(File.ReadAllBytes(Path.ChangeExtension(trace, ".json")));
        exported.RootElement.GetProperty("traceEvents").EnumerateArray().Should().ContainSingle(e => Phase(e) == "M");
        File.Exists(Path.Combine(_directory, "empty-plots", "index.html")).Should().BeTrue("the default directory is FILE's name with -plots, beside it");
    }

    [Fact]
    public async Task AMissingTraceFileIsABadArgument()
    {
        string missing = Path.Combine(_directory, "nope.hmmtrace");
        foreach (string[] args in new[]
        {
            new[] { "trace", "export", missing, "--format", "csv" },
            ["trace", "stats", missing],
            ["trace", "plot", missing],
        })
        {
            (int exit, string output, string error) = await InvokeAsync(args);

            exit.Should().Be(2, string.Join(' ', args));
            output.Should().BeEmpty();
            error.Should().Be($"hmmsim: trace file '{missing}' does not exist (see hmmsim trace --help){Environment.NewLine}");
        }
    }

    [Fact]
    public async Task AnUnknownFormatIsABadArgument()
    {
        (string trace, _, _) = await WriteSyntheticAsync();

        (int exit, _, string error) = await InvokeAsync("trace", "export", trace, "--format", "xml");

        exit.Should().Be(2);
        error.Should().Be("hmmsim: --format 'xml' is not perfetto or csv (see hmmsim --help)" + Environment.NewLine);
        error.TrimEnd().Should().NotContain("\n");
    }

    [Theory]
    [InlineData("text", 0, "the magic number is not")]
    [InlineData("truncated", 64 + (46 * 64), "ends without the end record")]
    [InlineData("corrupted", 64 + (5 * 64) + 60, "record 5")]
    public async Task AnInvalidTraceGivesTheReadersErrorWithItsOffsetAndExitCodeOne(string damage, long offset, string reason)
    {
        (string trace, _, _) = await WriteSyntheticAsync();
        byte[] bytes = File.ReadAllBytes(trace);
        switch (damage)
        {
            case "text":
                bytes = Encoding.ASCII.GetBytes("this is not a trace, but long enough to hold a header of sixty-four bytes.");
                break;
            case "truncated":
                bytes = bytes[..^64];
                break;
            default:
                bytes[64 + (5 * 64) + 40] ^= 0x10;
                break;
        }

        File.WriteAllBytes(trace, bytes);
        string json = Path.Combine(_directory, "out.json");
        foreach (string[] args in new[]
        {
            new[] { "trace", "export", trace, "--format", "perfetto", "-o", json },
            ["trace", "stats", trace],
            ["trace", "plot", trace, "-o", Path.Combine(_directory, "plots")],
        })
        {
            (int exit, string output, string error) = await InvokeAsync(args);

            exit.Should().Be(1, string.Join(' ', args));
            output.Should().BeEmpty();
            error.Should().StartWith($"hmmsim: '{trace}' is not a valid trace: invalid trace at byte offset {offset}: ");
            error.Should().Contain(reason);
            error.TrimEnd().Should().NotContain("\n", "the message is one line");
        }

        File.Exists(json).Should().BeFalse("an export that fails leaves no output");
        Directory.GetFiles(_directory).Should().Equal(trace);
    }

    private async Task<(string Path, int ThreadA, int ThreadB)> WriteSyntheticAsync(string name = "run.hmmtrace")
    {
        (TraceEvent[] events, int threadA, int threadB) = SyntheticTrace.Build();
        string path = Path.Combine(_directory, name);
        await SyntheticTrace.WriteAsync(path, events);
        return (path, threadA, threadB);
    }

    private static string Phase(JsonElement e) => e.GetProperty("ph").GetString()!;

    // The slice a flow event binds to: the one of the given name on the flow's track starting at the flow's time.
    private static JsonElement SliceAt(List<JsonElement> events, JsonElement flow, string name)
    {
        List<JsonElement> slices = [.. events.Where(e =>
            Phase(e) == "X" && e.GetProperty("name").GetString() == name
            && e.GetProperty("pid").GetInt32() == flow.GetProperty("pid").GetInt32()
            && e.GetProperty("tid").GetInt32() == flow.GetProperty("tid").GetInt32()
            && e.GetProperty("ts").GetDouble() == flow.GetProperty("ts").GetDouble())];
        slices.Should().HaveCount(1, $"flow {flow} binds to one {name}");
        return slices[0];
    }

    private static List<string[]> ParseCsv(string text)
    {
        var rows = new List<string[]>();
        var row = new List<string>();
        var field = new StringBuilder();
        bool quoted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"')
                {
                    field.Append('"');
                    i++;
                }
                else if (c == '"')
                {
                    quoted = false;
                }
                else
                {
                    field.Append(c);
                }
            }
            else if (c == '"')
            {
                quoted = true;
            }
            else if (c == ',')
            {
                row.Add(field.ToString());
                field.Clear();
            }
            else if (c == '\r' && i + 1 < text.Length && text[i + 1] == '\n')
            {
                row.Add(field.ToString());
                field.Clear();
                rows.Add([.. row]);
                row.Clear();
                i++;
            }
            else
            {
                field.Append(c);
            }
        }

        return rows;
    }

    private static async Task<(int Exit, string Output, string Error)> InvokeAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exit = await new HmmSimCommand(output, error, interactive: false).InvokeAsync(args);
        return (exit, output.ToString(), error.ToString());
    }
}
