using System.Diagnostics.Metrics;
using FluentAssertions;
using Hmm.Tests.AddressSpace;
using Xunit;

namespace Hmm.Tests.Migration;

public class MigrationMetricsTests
{
    [Fact]
    public void MigratedPagesAndBytesAreCounted()
    {
        PhysicalMemory memory = MigrationTestKit.NewMemory();
        var driver = new MigrationTestDriver(memory);
        var mm = new Mm(memory);
        ulong a = mm.MapAnonymous(3);
        MmTestSupport.Fill(mm, a, 3, seed: 70);
        long pages = 0;
        long bytes = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == HmmMetrics.MeterName && instrument.Name is "hmm.migration.pages" or "hmm.migration.bytes")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            if (instrument.Name == "hmm.migration.pages")
            {
                Interlocked.Add(ref pages, value);
            }
            else
            {
                Interlocked.Add(ref bytes, value);
            }
        });
        listener.Start();

        driver.MigrateToDevice(mm, a, a + (3 * MigrationTestKit.Page)).Should().Be(3);

        // The instruments are process-wide and tests run in parallel: at least this migration was counted.
        Interlocked.Read(ref pages).Should().BeGreaterThanOrEqualTo(3);
        Interlocked.Read(ref bytes).Should().BeGreaterThanOrEqualTo(3 * PageSize.Bytes);
        mm.Exit();
    }
}
