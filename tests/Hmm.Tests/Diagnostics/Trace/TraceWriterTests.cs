using System.IO.Pipelines;
using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Diagnostics.Trace;

public class TraceWriterTests
{
    [Fact]
    public async Task EveryKindRoundTripsWithTheWritersStamps()
    {
        TraceEvent[] written = TraceTestKit.OneOfEachKind();

        List<TraceEvent> read = await TraceTestKit.ReadAllAsync(TraceTestKit.WriteTrace(written));

        read.Should().HaveCount(written.Length);
        for (int i = 0; i < written.Length; i++)
        {
            read[i].Sequence.Should().Be((uint)i);
            read[i].Should().Be(written[i].Stamped((uint)i, read[i].WallTicks), "record {0} must come back as written", i);
        }

        read.Select(e => e.WallTicks).Should().BeInAscendingOrder().And.OnlyContain(t => t >= 0);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(63)]
    [InlineData(65)]
    [InlineData(4096)]
    public async Task RecordsSplitAcrossReadsComeBackWhole(int bytesPerRead)
    {
        TraceEvent[] written = TraceTestKit.OneOfEachKind();
        byte[] file = TraceTestKit.WriteTrace(written);

        List<TraceEvent> read = await TraceTestKit.ReadAllAsync(file, bytesPerRead);

        read.Select(e => e.Kind).Should().Equal(written.Select(e => e.Kind));
        read.Select(e => e.A).Should().Equal(written.Select(e => e.A));
    }

    [Fact]
    public async Task ConcurrentWritersLoseNothingAndKeepEachThreadsOrder()
    {
        const int Threads = 4;
        const int PerThread = 20_000;
        using var stream = new MemoryStream();
        using (var writer = TraceWriter.Create(stream, leaveOpen: true))
        {
            using var start = new Barrier(Threads);
            Thread[] threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
            {
                start.SignalAndWait();
                for (int i = 0; i < PerThread; i++)
                {
                    writer.Write(TraceEvent.Evict((ushort)t, (ulong)i, 1, i));
                }
            })).ToArray();
            Array.ForEach(threads, thread => thread.Start());
            Array.ForEach(threads, thread => thread.Join());
            writer.EventsWritten.Should().Be(Threads * PerThread);
        }

        List<TraceEvent> read = await TraceTestKit.ReadAllAsync(stream.ToArray());

        read.Should().HaveCount(Threads * PerThread);
        read.Select(e => e.Sequence).Should().BeInAscendingOrder("the reader also checks that sequence numbers are consecutive");
        for (ushort t = 0; t < Threads; t++)
        {
            read.Where(e => e.Device == t).Select(e => e.A).Should().Equal(Enumerable.Range(0, PerThread).Select(i => (ulong)i));
        }
    }

    [Fact]
    public async Task AReaderOnAnotherThreadDrainsAPipeThatPushesBack()
    {
        const int Events = 50_000;
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 16 * 1024, resumeWriterThreshold: 8 * 1024));
        Task<long> reading = Task.Run(async () =>
        {
            long count = 0;
            await using var reader = new TraceReader(pipe.Reader);
            await foreach (TraceEvent e in reader.ReadAllAsync())
            {
                e.A.Should().Be((ulong)count++);
            }

            return count;
        });

        await Task.Run(() =>
        {
            using var writer = new TraceWriter(pipe.Writer);
            for (int i = 0; i < Events; i++)
            {
                writer.Write(TraceEvent.TlbInvalidate(0, (ulong)i, (ulong)i + 1, i));
            }
        });

        (await reading).Should().Be(Events);
    }

    [Fact]
    public void WritingAnEventAllocatesNothing()
    {
        using var writer = TraceWriter.Create(Stream.Null);
        TraceEvent copy = TraceEvent.Copy(0, 1, TraceDirection.HostToDevice, 4096, 10, 20);

        long bytes = AllocationProbe.FewestBytesAllocated(() =>
        {
            for (int i = 0; i < 10_000; i++)
            {
                writer.Write(copy);
            }
        });

        bytes.Should().Be(0, "10,000 events, with several flushes among them");
    }

    [Fact]
    public void FlushHandsTheBufferedRecordsToTheStream()
    {
        using var stream = new MemoryStream();
        using var writer = TraceWriter.Create(stream, leaveOpen: true);
        writer.Write(TraceEvent.Evict(0, 1, 1, 1));
        writer.Write(TraceEvent.Evict(0, 2, 1, 2));

        writer.Flush();

        stream.Length.Should().Be(64 + (2 * 64));
    }

    [Fact]
    public async Task FlushAsyncHandsTheBufferedRecordsToTheStream()
    {
        using var stream = new MemoryStream();
        await using var writer = TraceWriter.Create(stream, leaveOpen: true);
        writer.Write(TraceEvent.Evict(0, 1, 1, 1));

        await writer.FlushAsync();

        stream.Length.Should().Be(64 + 64);
    }

    [Fact]
    public async Task DisposeAsyncEndsTheTraceLikeDispose()
    {
        using var stream = new MemoryStream();
        var writer = TraceWriter.Create(stream, leaveOpen: true);
        writer.Write(TraceEvent.Evict(0, 1, 1, 1));

        await writer.DisposeAsync();
        await writer.DisposeAsync();

        (await TraceTestKit.ReadAllAsync(stream.ToArray())).Should().ContainSingle();
    }

    [Fact]
    public void TheDefaultEventIsRefusedAndNothingIsWritten()
    {
        using var writer = TraceWriter.Create(Stream.Null);

        Action write = () => writer.Write(default);

        write.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        writer.EventsWritten.Should().Be(0);
    }

    [Fact]
    public void WritingOrFlushingAfterDisposeIsRefused()
    {
        var writer = TraceWriter.Create(Stream.Null);
        writer.Dispose();

        Action write = () => writer.Write(TraceEvent.Evict(0, 1, 1, 1));
        Action flush = writer.Flush;

        write.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        flush.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        writer.EventsWritten.Should().Be(0);
    }

    [Fact]
    public async Task WritingAfterThePipesReaderCompletedIsRefusedWithEio()
    {
        var pipe = new Pipe();
        await pipe.Reader.CompleteAsync();
        using var writer = new TraceWriter(pipe.Writer);
        writer.Write(TraceEvent.Evict(0, 1, 1, 1));
        writer.Flush();

        Action write = () => writer.Write(TraceEvent.Evict(0, 2, 1, 2));

        write.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EIO);
        writer.EventsWritten.Should().Be(1);
    }
}
