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
        TestKit.Fill(mm, a, 3, seed: 70);
        long pages = 0;
        long bytes = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == HmmMetrics.MeterName && instrument.Name is "hmm.migration.pages" or "hmm.migration.io")
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

    [Fact]
    public void SetupAndFinalizeLogOneDebugEventPerBatch()
    {
        var logger = new RecordingLogger();
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 16UL << 20, Logger = logger });
        var driver = new MigrationTestDriver(memory);
        var mm = new Mm(memory, "logged");
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 71);

        driver.MigrateToDevice(mm, a, a + (2 * MigrationTestKit.Page)).Should().Be(2);

        logger.Events.Should().Contain(e => e.Id == 400 && e.Message.Contains("2 of 2 page(s) collected", StringComparison.Ordinal));
        logger.Events.Should().Contain(e => e.Id == 401 && e.Message.Contains("2 of 2 entries migrated", StringComparison.Ordinal));
        mm.Exit();
    }

    private sealed class RecordingLogger : Microsoft.Extensions.Logging.ILogger
    {
        private readonly Lock _lock = new();
        private readonly List<(int Id, string Message)> _events = [];

        public IReadOnlyList<(int Id, string Message)> Events
        {
            get
            {
                lock (_lock)
                {
                    return [.. _events];
                }
            }
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_lock)
            {
                _events.Add((eventId.Id, formatter(state, exception)));
            }
        }
    }
}
