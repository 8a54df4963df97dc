using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Hmm.Benchmarks;

/// <summary>
/// Entry point for every benchmark class in this assembly. Pass BenchmarkDotNet's own arguments, e.g.
/// <c>--filter '*' --job dry</c> (the CI smoke run) or <c>--filter '*PageRef*' --job short</c>.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        BenchmarkSwitcher switcher = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly);
#if DEBUG
        // Debug builds run in-process so breakpoints work; their figures mean nothing.
        IEnumerable<Summary> summaries = switcher.Run(args, new DebugInProcessConfig());
#else
        IEnumerable<Summary> summaries = switcher.Run(args, new HmmBenchmarkConfig());
#endif

        // A benchmark that threw, failed to build or broke a validator must fail the CI smoke run.
        foreach (Summary summary in summaries)
        {
            if (summary.HasCriticalValidationErrors)
            {
                return 1;
            }

            foreach (BenchmarkReport report in summary.Reports)
            {
                if (!report.Success)
                {
                    return 1;
                }
            }
        }

        return 0;
    }
}
