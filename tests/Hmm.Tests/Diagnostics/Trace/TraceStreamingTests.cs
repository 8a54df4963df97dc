using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Diagnostics.Trace;

/// <summary>
/// The million-event round trip. It measures the live heap while it reads, so it runs alone
/// (<see cref="TraceStreamingCollection"/>): memory another test holds meanwhile would be counted too.
/// </summary>
[Collection(nameof(TraceStreamingCollection))]
public class TraceStreamingTests
{
    [Fact]
    public async Task AMillionEventsAreReadBackStreamingInBoundedMemory()
    {
        const int Events = 1_000_000;
        string path = Path.Combine(Path.GetTempPath(), $"hmm-trace-{Guid.NewGuid():N}.hmmtrace");
        try
        {
            await using (var writer = TraceWriter.Create(File.Create(path)))
            {
                for (int i = 0; i < Events; i++)
                {
                    writer.Write(TraceEvent.DeviceFault((ushort)(i & 3), (ulong)i * 4096, TraceDeviceAccess.Read, i));
                }
            }

            new FileInfo(path).Length.Should().Be(64 + ((Events + 1) * 64L), "a header, the records and the end record");

            long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
            long largestHeapGrowth = 0;
            var batch = new TraceEvent[4096];
            long seen = 0;
            await using (var reader = TraceReader.Create(File.OpenRead(path)))
            {
                int count;
                while ((count = await reader.ReadAsync(batch)) > 0)
                {
                    for (int i = 0; i < count; i++, seen++)
                    {
                        TraceEvent e = batch[i];
                        if (seen % 250_000 == 0)
                        {
                            largestHeapGrowth = Math.Max(largestHeapGrowth, GC.GetTotalMemory(forceFullCollection: true) - heapBefore);
                        }

                        if (e.A != (ulong)seen * 4096 || e.VirtualNs != seen || e.Device != (seen & 3) || e.Sequence != (uint)seen)
                        {
                            Assert.Fail($"record {seen} came back as {e}");
                        }
                    }
                }

                reader.EventsRead.Should().Be(Events);
            }

            seen.Should().Be(Events);
            largestHeapGrowth.Should().BeLessThan(4L << 20, "the 64 MB file is streamed, never held whole");
        }
        finally
        {
            File.Delete(path);
        }
    }
}
