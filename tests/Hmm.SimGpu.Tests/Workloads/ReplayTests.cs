using FluentAssertions;
using Hmm.Drivers;
using Hmm.SimGpu;
using Xunit;

namespace Hmm.SimGpu.Tests.Workloads;

public sealed class ReplayTests
{
    private const ulong MiB = 1UL << 20;

    /// <summary>24 MiB per device over 16 MiB of device memory: oversubscribed, with a fit phase, small enough for a unit test.</summary>
    private static SimulationOptions Oversubscribed(WorkloadKind kind, bool metadataOnly = false, int devices = 1) => new()
    {
        Workload = kind,
        WorkingSetBytes = 24 * MiB * (ulong)devices,
        DeviceMemoryBytes = 16 * MiB,
        Devices = devices,
        Seed = 5,
        MetadataOnly = metadataOnly,
        Engines = 4,
        WarpsPerEngine = 32,
    };

    [Theory]
    [InlineData(WorkloadKind.Stream, false, 1)]
    [InlineData(WorkloadKind.Random, false, 1)]
    [InlineData(WorkloadKind.Stencil, false, 1)]
    [InlineData(WorkloadKind.Random, false, 2)]
    [InlineData(WorkloadKind.Stencil, true, 3)]
    public void AReplayWithTheRecordedConfigurationReproducesTheRunBitForBit(WorkloadKind kind, bool metadataOnly, int devices)
    {
        (SimulationReport recorded, byte[] trace) = Record(Oversubscribed(kind, metadataOnly, devices));

        SimulationReport replayed = Simulation.Replay(new MemoryStream(trace));

        Fingerprint(replayed).Should().Be(Fingerprint(recorded));
        replayed.Phases.Select(Fingerprint).Should().Equal(recorded.Phases.Select(Fingerprint));
        replayed.DataCheck.Should().Be(metadataOnly ? DataCheckResult.Skipped : DataCheckResult.Passed);
        replayed.AccessesReplayed.Should().Be(CountAccessEvents(trace)).And.BeGreaterThan(0);
        recorded.AccessesReplayed.Should().Be(0, "a run is not a replay");
    }

    [Fact]
    public void TheReplaysTraceHoldsTheRecordedRunsEventsAgain()
    {
        (_, byte[] recording) = Record(Oversubscribed(WorkloadKind.Stencil));
        using var replayTrace = new MemoryStream();
        using (var writer = TraceWriter.Create(replayTrace, leaveOpen: true))
        {
            Simulation.Replay(new MemoryStream(recording), trace: writer);
        }

        List<TraceEvent> original = ReadAll(recording);
        List<TraceEvent> replayed = ReadAll(replayTrace.ToArray());

        original.Should().NotBeEmpty();
        replayed.Select(WithoutStamps).Should().Equal(original.Select(WithoutStamps), "a replay of a replay is the same run");
    }

    [Fact]
    public void TracingARunDoesNotChangeItsReport()
    {
        SimulationOptions options = Oversubscribed(WorkloadKind.Random);

        (SimulationReport traced, _) = Record(options);

        Fingerprint(traced).Should().Be(Fingerprint(Simulation.Run(options)));
    }

    [Fact]
    public void RecordingTheAccessStreamAllocatesNothingPerAccess()
    {
        SimulationOptions options = Oversubscribed(WorkloadKind.Stream, metadataOnly: true);
        Simulation.Run(options); // warm up: JIT and pools
        long untraced = AllocatedBy(() => Simulation.Run(options));
        long events;
        long traced;
        using (var writer = TraceWriter.Create(Stream.Null))
        {
            traced = AllocatedBy(() => Simulation.Run(options, trace: writer));
            events = writer.EventsWritten;
        }

        (_, byte[] trace) = Record(options);
        long accesses = CountAccessEvents(trace);
        accesses.Should().BeGreaterThan(50_000);
        ((double)(traced - untraced) / events).Should().BeLessThan(1, $"{traced - untraced} bytes more for {events} events ({accesses} of them accesses)");
    }

    [Fact]
    public void LessDeviceMemoryEvictsMoreOnTheSameStream()
    {
        var fitting = new SimulationOptions { WorkingSetBytes = 24 * MiB, DeviceMemoryBytes = 32 * MiB, Engines = 4, WarpsPerEngine = 32 };
        (SimulationReport recorded, byte[] trace) = Record(fitting);

        SimulationReport asRecorded = Simulation.Replay(new MemoryStream(trace));
        SimulationReport smaller = Simulation.Replay(new MemoryStream(trace), new SimulationReplayOptions { DeviceMemoryBytes = 16 * MiB });

        recorded.EvictedPages.Should().Be(0, "the recorded run fits in device memory");
        smaller.DeviceMemoryBytes.Should().Be(16 * MiB);
        smaller.EvictedPages.Should().BeGreaterThan(asRecorded.EvictedPages);
        smaller.AccessesReplayed.Should().Be(asRecorded.AccessesReplayed, "both replays feed the same recorded stream");
        smaller.PagesTouched.Should().Be(recorded.PagesTouched);
        smaller.Phases.Select(p => p.WorkUnits).Should().Equal(recorded.Phases.Select(p => p.WorkUnits), "the recorded phases stay: no fit phase appears");
        smaller.DataCheck.Should().Be(DataCheckResult.Passed);
    }

    [Fact]
    public void ASmallerBatchServicesMoreBatches()
    {
        (SimulationReport recorded, byte[] trace) = Record(Oversubscribed(WorkloadKind.Random));

        SimulationReport smallBatches = Simulation.Replay(new MemoryStream(trace), new SimulationReplayOptions { BatchSize = 16 });

        smallBatches.Options.BatchSize.Should().Be(16);
        smallBatches.FaultBatches.Should().BeGreaterThan(recorded.FaultBatches);
        smallBatches.AccessesReplayed.Should().Be(CountAccessEvents(trace));
        smallBatches.DataCheck.Should().Be(DataCheckResult.Passed);
    }

    [Fact]
    public void OtherWarpsTakeTheSameRecordedItems()
    {
        (SimulationReport recorded, byte[] trace) = Record(Oversubscribed(WorkloadKind.Stencil, devices: 2));

        SimulationReport fewerWarps = Simulation.Replay(new MemoryStream(trace), new SimulationReplayOptions { Engines = 2, WarpsPerEngine = 8 });

        fewerWarps.DataCheck.Should().Be(DataCheckResult.Passed);
        fewerWarps.PagesTouched.Should().Be(recorded.PagesTouched);
        fewerWarps.AccessesReplayed.Should().Be(CountAccessEvents(trace));
        fewerWarps.DuplicatesMerged.Should().BeLessThan(recorded.DuplicatesMerged, "fewer warps share a page in flight");
    }

    [Fact]
    public void AnotherCostModelChargesTheSameWorkDifferently()
    {
        (SimulationReport recorded, byte[] trace) = Record(Oversubscribed(WorkloadKind.Stream));
        var slowFaults = new SimGpuCostModel { FarFaultLatency = 90_000 };

        SimulationReport replayed = Simulation.Replay(new MemoryStream(trace), new SimulationReplayOptions { Costs = slowFaults });

        replayed.DeviceFaults.Should().Be(recorded.DeviceFaults, "the clock does not change the schedule");
        replayed.FaultBatches.Should().Be(recorded.FaultBatches);
        replayed.SimulatedNanoseconds.Should().BeGreaterThan(recorded.SimulatedNanoseconds);
    }

    [Fact]
    public void AnotherResidencyPolicyRunsTheSameStream()
    {
        (SimulationReport recorded, byte[] trace) = Record(Oversubscribed(WorkloadKind.Stream));
        var devicesAsked = new List<int>();

        SimulationReport replayed = Simulation.Replay(new MemoryStream(trace), new SimulationReplayOptions
        {
            ResidencyPolicy = device =>
            {
                devicesAsked.Add(device);
                return new WholeBlockPolicy();
            },
        });

        devicesAsked.Should().Equal(0);
        replayed.DataCheck.Should().Be(DataCheckResult.Passed);
        replayed.AccessesReplayed.Should().Be(CountAccessEvents(trace));
        replayed.FaultBatches.Should().BeLessThan(recorded.FaultBatches, "migrating whole blocks on first touch leaves fewer pages to fault");
    }

    [Fact]
    public void AMetadataOnlyReplayOfARunWithDataCostsTheSame()
    {
        (SimulationReport recorded, byte[] trace) = Record(Oversubscribed(WorkloadKind.Random));

        SimulationReport replayed = Simulation.Replay(new MemoryStream(trace), new SimulationReplayOptions { MetadataOnly = true });

        replayed.DataCheck.Should().Be(DataCheckResult.Skipped);
        replayed.SimulatedNanoseconds.Should().Be(recorded.SimulatedNanoseconds);
        replayed.DeviceFaults.Should().Be(recorded.DeviceFaults);
        replayed.PagesToRam.Should().Be(recorded.PagesToRam);
    }

    [Theory]
    [InlineData(0, null, "batch size")]
    [InlineData(null, 3UL << 20, "device memory")]
    public void AChangeOutOfRangeIsRefusedNamingIt(int? batchSize, ulong? deviceMemory, string named)
    {
        (_, byte[] trace) = Record(Oversubscribed(WorkloadKind.Stream));

        Action replay = () => Simulation.Replay(new MemoryStream(trace), new SimulationReplayOptions { BatchSize = batchSize, DeviceMemoryBytes = deviceMemory });

        replay.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL && e.Message.Contains(named));
    }

    [Fact]
    public void ATraceWithoutARecordedRunIsRefusedSayingWhatIsMissing()
    {
        byte[] trace = WriteTrace(TraceEvent.CpuFault(0x1000, FaultFlags.Write, VmFaultResult.None, 5));

        Action replay = () => Simulation.Replay(new MemoryStream(trace));

        replay.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL && e.Message.Contains("no run configuration") && e.Message.Contains("access stream"));
    }

    [Fact]
    public void AnIncompleteConfigurationIsRefusedNamingTheMissingField()
    {
        byte[] trace = WriteTrace(TraceEvent.RunConfiguration(1, 0), TraceEvent.RunConfiguration(2, 24 * MiB), TraceEvent.Phase(1, 4096, 0));

        Action replay = () => Simulation.Replay(new MemoryStream(trace));

        replay.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL && e.Message.Contains("device memory"));
    }

    [Fact]
    public void AConfigurationWithoutPhasesIsRefused()
    {
        (_, byte[] recording) = Record(Oversubscribed(WorkloadKind.Stream));
        TraceEvent[] configuration = ReadAll(recording).Where(e => e.Kind == TraceEventKind.RunConfiguration).ToArray();

        Action replay = () => Simulation.Replay(new MemoryStream(WriteTrace(configuration)));

        replay.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL && e.Message.Contains("no phase"));
    }

    [Fact]
    public void AStreamMissingWorkItemsIsRefused()
    {
        (_, byte[] recording) = Record(Oversubscribed(WorkloadKind.Stream));
        List<TraceEvent> events = ReadAll(recording);
        int lastAccess = events.FindLastIndex(e => e.Kind == TraceEventKind.DeviceAccess);
        events.RemoveRange(lastAccess - 7, 8);

        Action replay = () => Simulation.Replay(new MemoryStream(WriteTrace([.. events])));

        replay.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL && e.Message.Contains("ends before the work items of its rows"));
    }

    [Fact]
    public void WorkItemsOutsideAnyLaunchAreRefused()
    {
        (_, byte[] recording) = Record(Oversubscribed(WorkloadKind.Stream));
        List<TraceEvent> events = ReadAll(recording);
        TraceEvent stray = TraceEvent.DeviceAccess(0, 0, events.First(e => e.Kind == TraceEventKind.DeviceAccess).A, 512, TraceDeviceAccess.Read, true, 0, 0);

        Action replay = () => Simulation.Replay(new MemoryStream(WriteTrace([.. events, stray])));

        replay.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL && e.Message.Contains("outside any kernel launch"));
    }

    [Fact]
    public void AnAccessOutsideTheRecordedBufferIsRefused()
    {
        (_, byte[] recording) = Record(Oversubscribed(WorkloadKind.Random, metadataOnly: true));
        List<TraceEvent> events = ReadAll(recording);
        int first = events.FindIndex(e => e.Kind == TraceEventKind.DeviceAccess);
        TraceEvent access = events[first];
        events[first] = TraceEvent.DeviceAccess(access.Device, access.Arg, access.A + (1UL << 40), access.B, access.AsDeviceAccess().Access, access.AsDeviceAccess().EndsItem, access.C, access.VirtualNs);

        Action replay = () => Simulation.Replay(new MemoryStream(WriteTrace([.. events])));

        replay.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL && e.Message.Contains("within one page of the recorded buffer"));
    }

    [Fact]
    public void ACorruptedTraceSurfacesTheFormatErrorWithItsOffset()
    {
        (_, byte[] trace) = Record(Oversubscribed(WorkloadKind.Stream));
        int record = 64 + (64 * 1000);
        trace[record + 40] ^= 0x10;

        Action replay = () => Simulation.Replay(new MemoryStream(trace));

        replay.Should().Throw<TraceFormatException>().Which.Offset.Should().Be(record + 60);
    }

    [Fact]
    public void ATruncatedTraceSurfacesTheFormatError()
    {
        (_, byte[] trace) = Record(Oversubscribed(WorkloadKind.Stream));

        Action replay = () => Simulation.Replay(new MemoryStream(trace[..(trace.Length / 2)]));

        replay.Should().Throw<TraceFormatException>().Which.Message.Should().Contain("ends");
    }

    [Fact]
    public void ACancelledReplayStops()
    {
        (_, byte[] trace) = Record(Oversubscribed(WorkloadKind.Stream));

        Action replay = () => Simulation.Replay(new MemoryStream(trace), cancellationToken: new CancellationToken(canceled: true));

        replay.Should().Throw<OperationCanceledException>();
    }

    [Fact]
    public void ANullRecordingIsRejected()
    {
        Action replay = () => Simulation.Replay(null!);

        replay.Should().Throw<ArgumentNullException>();
    }

    private static long AllocatedBy(Action action)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        action();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    internal static (SimulationReport Report, byte[] Trace) Record(SimulationOptions options)
    {
        using var stream = new MemoryStream();
        SimulationReport report;
        using (var writer = TraceWriter.Create(stream, leaveOpen: true))
        {
            report = Simulation.Run(options, trace: writer);
        }

        return (report, stream.ToArray());
    }

    private static string Fingerprint(SimulationReport r) =>
        $"{r.DeviceMemoryBytes} {r.PagesTouched} {r.DeviceFaults} {r.FaultBatches} {r.DuplicatesMerged} {r.CpuFaults} {r.PagesToDevice} {r.BytesToDevice} " +
        $"{r.PagesToRam} {r.BytesToRam} {r.EvictedBlocks} {r.EvictedPages} {r.SimulatedNanoseconds} {r.DataCheck} {r.PagesChecked} {r.DataErrors} {r.Phases.Count}";

    private static string Fingerprint(SimulationPhaseReport p) =>
        $"{p.Name} {p.WorkUnits} {p.SimulatedNanoseconds} {p.DeviceFaults} {p.CpuFaults} {p.PagesToDevice} {p.PagesToRam} {p.EvictedPages}";

    private static (TraceEventKind, ushort, ushort, TraceEngine, uint, long, ulong, ulong, ulong) WithoutStamps(TraceEvent e) =>
        (e.Kind, e.Flags, e.Device, e.Engine, e.Arg, e.VirtualNs, e.A, e.B, e.C);

    private static long CountAccessEvents(byte[] trace) =>
        ReadAll(trace).Count(e => e.Kind is TraceEventKind.DeviceAccess or TraceEventKind.CpuAccess);

    private static List<TraceEvent> ReadAll(byte[] trace)
    {
        using TraceReader reader = TraceReader.Create(new MemoryStream(trace));
        var events = new List<TraceEvent>();
        var batch = new TraceEvent[4096];
        int count;
        while ((count = reader.ReadAsync(batch).AsTask().GetAwaiter().GetResult()) > 0)
        {
            events.AddRange(batch.Take(count));
        }

        return events;
    }

    private static byte[] WriteTrace(params TraceEvent[] events)
    {
        using var stream = new MemoryStream();
        using (var writer = TraceWriter.Create(stream, leaveOpen: true))
        {
            foreach (TraceEvent e in events)
            {
                writer.Write(e);
            }
        }

        return stream.ToArray();
    }

    /// <summary>Another policy: migrates the whole 2 MiB block on its first fault (prefetching), and evicts as LRU does.</summary>
    private sealed class WholeBlockPolicy : IResidencyPolicy
    {
        private readonly LruResidencyPolicy _lru = new();

        public void SelectPagesToMigrate(int block, ulong address, ReadOnlySpan<ulong> faulted, ReadOnlySpan<ulong> resident, Span<ulong> migrate) =>
            migrate.Fill(ulong.MaxValue);

        public int SelectVictim(int busyBlock) => _lru.SelectVictim(busyBlock);

        public void BlockPopulated(int block) => _lru.BlockPopulated(block);

        public void BlockEvictionIncomplete(int block) => _lru.BlockEvictionIncomplete(block);

        public void BlockEmptied(int block) => _lru.BlockEmptied(block);
    }
}
