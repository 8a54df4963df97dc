using FluentAssertions;
using Hmm.SimGpu;
using Xunit;

namespace Hmm.SimGpu.Tests.Tracing;

/// <summary>A whole traced hmmsim run: every kind the run exercises, counts that agree with the report, and a report that tracing does not change.</summary>
public sealed class SimulationTraceTests
{
    private const ulong MiB = 1UL << 20;

    private static SimulationOptions Oversubscribed(int devices = 1) => new()
    {
        Workload = WorkloadKind.Stencil,
        WorkingSetBytes = 24 * MiB * (ulong)devices,
        DeviceMemoryBytes = 16 * MiB,
        Devices = devices,
        Seed = 11,
        Engines = 4,
        WarpsPerEngine = 32,
    };

    private static (SimulationReport Report, List<TraceEvent> Events) RunTraced(SimulationOptions options)
    {
        using var stream = new MemoryStream();
        SimulationReport report;
        using (var writer = TraceWriter.Create(stream, leaveOpen: true))
        {
            report = Simulation.Run(options, trace: writer);
        }

        return (report, TraceCapture.Read(stream.ToArray()));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ATracedRunRecordsEveryKindItExercisesWithCountsThatAgreeWithTheReport(int devices)
    {
        (SimulationReport report, List<TraceEvent> events) = RunTraced(Oversubscribed(devices));

        TraceEventKind[] exercised =
        [
            TraceEventKind.CpuFault, TraceEventKind.DeviceFault, TraceEventKind.FaultBatch, TraceEventKind.Invalidate,
            TraceEventKind.MigrateSetup, TraceEventKind.MigratePages, TraceEventKind.MigrateFinalize, TraceEventKind.Copy,
            TraceEventKind.Evict, TraceEventKind.TlbInvalidate, TraceEventKind.DeviceAlloc, TraceEventKind.DeviceFree,
            TraceEventKind.PagemapLifetime,
        ];
        events.Select(e => e.Kind).Distinct().Should().Contain(exercised);
        if (devices > 1)
        {
            // One device's pages in the other's memory: the driver faults them back with hmm_range_fault. With one
            // device every faulted page migrates, and no range fault is needed.
            events.Should().Contain(e => e.Kind == TraceEventKind.RangeFault);
        }

        events.OfKind(TraceEventKind.RangeFault).Should().NotContain(e => e.AsRangeFault().Pages == 0 || e.Device >= devices);

        events.OfKind(TraceEventKind.DeviceFault).Should().HaveCount((int)report.DeviceFaults);
        List<TraceEvent> batches = events.OfKind(TraceEventKind.FaultBatch);
        batches.Should().HaveCount((int)report.FaultBatches);
        batches.Sum(e => (long)e.AsFaultBatch().Faults).Should().Be(report.DeviceFaults);
        batches.Sum(e => (long)e.AsFaultBatch().DuplicatesMerged).Should().Be(report.DuplicatesMerged);

        List<TraceEvent> finals = events.OfKind(TraceEventKind.MigrateFinalize);
        finals.Where(e => e.AsMigrateFinalize().Direction == TraceDirection.HostToDevice)
            .Sum(e => (long)e.AsMigrateFinalize().Moved).Should().Be(report.PagesToDevice);
        finals.Where(e => e.AsMigrateFinalize().Direction == TraceDirection.DeviceToHost)
            .Sum(e => (long)e.AsMigrateFinalize().Moved).Should().Be(report.PagesToRam);
        List<TraceEvent> evictions = events.OfKind(TraceEventKind.Evict);
        evictions.Should().HaveCount((int)report.EvictedBlocks);
        evictions.Sum(e => (long)e.AsEvict().Pages).Should().Be(report.EvictedPages);

        // Per device: its engines' virtual times never go back, copies end after they start, and every page
        // allocated is freed again by the end of the run.
        for (ushort device = 0; device < devices; device++)
        {
            ushort d = device;
            ShouldNotGoBack(events.Where(e => e.Device == d && e.Kind == TraceEventKind.DeviceFault), $"device {d}'s faults");
            ShouldNotGoBack(events.Where(e => e.Device == d && e.Kind == TraceEventKind.FaultBatch), $"device {d}'s batches");
            List<TraceEvent> copies = events.Where(e => e.Device == d && e.Kind == TraceEventKind.Copy).ToList();
            ShouldNotGoBack(copies, $"device {d}'s copies");
            copies.Should().OnlyContain(e => e.VirtualNs <= e.AsCopy().EndNs);
            List<TraceEvent> memory = events.Where(e => e.Device == d && e.Kind is TraceEventKind.DeviceAlloc or TraceEventKind.DeviceFree).ToList();
            memory.Should().NotBeEmpty();
            memory[^1].Kind.Should().Be(TraceEventKind.DeviceFree);
            memory[^1].AsDeviceFree().PagesInUse.Should().Be(0, $"device {d}'s pages are all free at the end");
            events.Where(e => e.Device == d && e.Kind == TraceEventKind.PagemapLifetime).Select(e => e.AsPagemapLifetime().Change)
                .Should().Contain([TracePagemapChange.Kill, TracePagemapChange.Idle, TracePagemapChange.Removed]);
        }
    }

    [Fact]
    public void TracingDoesNotChangeTheReport()
    {
        SimulationReport untraced = Simulation.Run(Oversubscribed());
        (SimulationReport traced, _) = RunTraced(Oversubscribed());

        traced.Should().BeEquivalentTo(untraced, options => options
            .Excluding(r => r.WallTime)
            .Excluding(r => r.PagesPerWallSecond)
            .Excluding(member => member.Path.EndsWith("WallTime", StringComparison.Ordinal)));
    }

    private static void ShouldNotGoBack(IEnumerable<TraceEvent> events, string what)
    {
        long last = long.MinValue;
        foreach (TraceEvent e in events)
        {
            e.VirtualNs.Should().BeGreaterThanOrEqualTo(last, what);
            last = e.VirtualNs;
        }
    }
}
