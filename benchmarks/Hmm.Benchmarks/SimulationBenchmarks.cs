using BenchmarkDotNet.Attributes;
using Hmm.SimGpu;

namespace Hmm.Benchmarks;

/// <summary>
/// The default hmmsim run end to end (<see cref="Simulation.Run"/> with <c>new SimulationOptions()</c>: a 96 MiB
/// STREAM triad on one simulated GPU with 64 MiB, machine setup and teardown included), with real data and
/// metadata-only. Figures are per page of the working set (24,576 pages), so pages per second of wall time is
/// 1e9 / Mean; the allocation column is per page too.
/// </summary>
[MemoryDiagnoser]
public class SimulationBenchmarks
{
    private const int WorkingSetPages = 24_576;

    private static readonly SimulationOptions s_defaultRun = new();
    private static readonly SimulationOptions s_defaultRunMetadataOnly = new() { MetadataOnly = true };

    [GlobalSetup]
    public void Setup()
    {
        if (s_defaultRun.WorkingSetBytes / 4096 != WorkingSetPages)
        {
            throw new InvalidOperationException($"The default working set is no longer {WorkingSetPages} pages; update OperationsPerInvoke.");
        }
    }

    /// <summary>The default run with real data and its data check.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = WorkingSetPages)]
    public long DefaultHmmsimRun() => Simulation.Run(s_defaultRun).PagesToDevice;

    /// <summary>The same run on a metadata-only machine: the bookkeeping alone.</summary>
    [Benchmark(OperationsPerInvoke = WorkingSetPages)]
    public long DefaultHmmsimRunMetadataOnly() => Simulation.Run(s_defaultRunMetadataOnly).PagesToDevice;
}
