using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Validators;

namespace Hmm.Benchmarks;

/// <summary>
/// The configuration every benchmark class runs under: BenchmarkDotNet's defaults (the job comes from the
/// command line, e.g. <c>--job dry</c> or <c>--job short</c>), plus allocation figures, full JSON results next
/// to the default GitHub markdown ones in <c>BenchmarkDotNet.Artifacts/results</c>, and a hard failure on a
/// non-optimised build.
/// </summary>
public class HmmBenchmarkConfig : ManualConfig
{
    public HmmBenchmarkConfig()
    {
        Add(DefaultConfig.Instance);
        AddDiagnoser(MemoryDiagnoser.Default);
        AddExporter(JsonExporter.Full);
        AddValidator(JitOptimizationsValidator.FailOnError);
    }
}
