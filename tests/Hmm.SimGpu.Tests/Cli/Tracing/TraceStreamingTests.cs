using System.IO.Pipelines;
using FluentAssertions;
using Hmm.Cli.Tracing;
using Xunit;

namespace Hmm.SimGpu.Tests.Cli.Tracing;

// GC.GetTotalAllocatedBytes counts the whole process: no other test may run meanwhile.
[Collection(nameof(TraceStreamingTests))]
[CollectionDefinition(nameof(TraceStreamingTests), DisableParallelization = true)]
public sealed class TraceStreamingTests
{
    private const int FaultsPerBatch = 250;
    private const int Batches = 4_000;

    // Per batch: 250 faults, the batch, a migrate_vma_setup and a migrate_vma_finalize inside its window.
    private const long EventsPerBatch = FaultsPerBatch + 3;

    [Fact]
    public async Task AMillionEventTraceStreamsThroughAPipeIntoTheExporterAndStatisticsInBoundedMemory()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 1 << 17, resumeWriterThreshold: 1 << 16));
        Task writing = Task.Run(() =>
        {
            using var writer = new TraceWriter(pipe.Writer);
            long ns = 0;
            for (int b = 0; b < Batches; b++)
            {
                ushort device = (ushort)(b % 2);
                long batchStart = ns + (FaultsPerBatch * 10);
                for (int f = 0; f < FaultsPerBatch; f++)
                {
                    writer.Write(TraceEvent.DeviceFault(device, (ulong)((b * FaultsPerBatch) + f) << 12, TraceDeviceAccess.Read, ns + (f * 10)));
                }

                writer.Write(TraceEvent.MigrateSetup(device, TraceDirection.HostToDevice, MigrateVmaSelect.System, (ulong)b << 20, FaultsPerBatch, FaultsPerBatch, batchStart + 100));
                writer.Write(TraceEvent.MigrateFinalize(device, TraceDirection.HostToDevice, (ulong)b << 20, FaultsPerBatch, 0, batchStart + 900));
                writer.Write(TraceEvent.FaultBatch(device, (uint)b, FaultsPerBatch, 0, batchStart, batchStart + 1000));
                ns = batchStart + 1000;
            }
        });

        var statistics = new TraceStatistics();
        using var exporter = new PerfettoExporter(Stream.Null);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        TraceHeader header = await TraceInput.ReadAsync(new TraceReader(pipe.Reader), [statistics, exporter], CancellationToken.None);
        exporter.Complete(header, statistics.Events);
        statistics.Complete();
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        await writing;

        long events = Batches * EventsPerBatch;
        statistics.Events.Should().Be(events);
        statistics.DeviceFaults.Should().Be(Batches * FaultsPerBatch);
        statistics.Batches.Should().Be(Batches);
        statistics.PagesToDevice.Should().Be(Batches * FaultsPerBatch);
        statistics.FaultLatencies.Count.Should().Be(Batches * FaultsPerBatch);
        statistics.FaultLatencies.Max.Should().Be((FaultsPerBatch * 10) + 1000);
        exporter.FaultFlows.Should().Be(Batches * FaultsPerBatch);
        exporter.MigrationFlows.Should().Be(Batches);

        // The trace is 64 bytes an event (about 62 MiB here): holding it, or a list of its events, would
        // allocate at least that much. Streaming allocates the pipe's and the reader's buffers and the queues of
        // faults waiting for their batch (about 2 MiB here), whatever the length. (A small pause threshold keeps
        // the pipe's segments recycled through the array pool, rather than allocated anew.)
        long traceBytes = events * TraceEvent.Size;
        allocated.Should().BeLessThan(traceBytes / 8, $"{allocated:N0} bytes were allocated to stream {events:N0} events ({traceBytes:N0} bytes)");
    }

    [Fact]
    public void TheTimelineKeepsAtMost256BinsAndTheTotalsWhateverTheRunsLength()
    {
        var timeline = new TraceTimeline();
        const int faults = 100_000;
        for (int i = 0; i < faults; i++)
        {
            timeline.Add(TraceEvent.DeviceFault(0, 0, TraceDeviceAccess.Read, i * 1_000L));
        }

        timeline.Add(TraceEvent.DeviceAlloc(1, 0, 10, 10, 5_000_000));
        timeline.Add(TraceEvent.DeviceFree(1, 0, 4, 6, 50_000_000));

        timeline.UsedBins.Should().BeInRange(128, TraceTimeline.Bins);
        timeline.BinNs.Should().Be(1000L << 9, "100 ms over 256 bins of a power-of-two multiple of 1 us");
        timeline.DeviceFaults.ToArray().Sum().Should().Be(faults);
        double[] inUse = timeline.PagesInUse(1);
        inUse[0].Should().Be(0, "nothing was allocated yet");
        inUse[(int)(5_000_000 / timeline.BinNs)].Should().Be(10);
        inUse[(int)(50_000_000 / timeline.BinNs)].Should().Be(6);
        inUse[^1].Should().Be(6, "the level carries over bins without a change");
    }
}
