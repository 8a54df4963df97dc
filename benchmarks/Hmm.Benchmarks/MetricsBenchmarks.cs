using System.Diagnostics.Metrics;
using BenchmarkDotNet.Attributes;

namespace Hmm.Benchmarks;

/// <summary>
/// The cost of the Hmm meters on the fault-servicing path: <see cref="FaultServicingBenchmarks.ServiceABatchOf256Faults"/>
/// with no listener (<see cref="ServiceABatchOf256FaultsUnobserved"/>, the baseline: every instrument is one enabled
/// check) and with a <see cref="MeterListener"/> enabled on every instrument of the meters named Hmm that sums each
/// measurement (<see cref="ServiceABatchOf256FaultsWithAListener"/>: device faults, batch, batch size, migrations
/// with their attributes, invalidations, page allocations and frees are all delivered to it).
/// </summary>
/// <remarks>The listener lives from its benchmark's setup to its cleanup, so it is never attached to the other one.
/// Figures are per fault (256 per invocation); neither allocates once warm.</remarks>
[MemoryDiagnoser]
public class MetricsBenchmarks
{
    private const int Batch = 256;

    private FaultServicingBenchmarks _faults = null!;
    private MeterListener? _listener;
    private long _measured;

    [GlobalSetup(Target = nameof(ServiceABatchOf256FaultsUnobserved))]
    public void SetupUnobserved()
    {
        _faults = new FaultServicingBenchmarks();
        _faults.Setup();
    }

    [GlobalSetup(Target = nameof(ServiceABatchOf256FaultsWithAListener))]
    public void SetupWithAListener()
    {
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == HmmMetrics.MeterName)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            },
        };
        _listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref _measured, value));
        _listener.Start();
        _faults = new FaultServicingBenchmarks();
        _faults.Setup();
        if (Interlocked.Read(ref _measured) == 0)
        {
            throw new InvalidOperationException("The listener heard nothing during the warm-up.");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _faults.Cleanup();
        _listener?.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public int ServiceABatchOf256FaultsUnobserved() => _faults.ServiceABatchOf256Faults();

    [Benchmark(OperationsPerInvoke = Batch)]
    public int ServiceABatchOf256FaultsWithAListener() => _faults.ServiceABatchOf256Faults();
}
