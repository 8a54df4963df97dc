namespace Hmm.Cli.Workloads;

/// <summary>The knobs of a workload run.</summary>
internal sealed record WorkloadSettings(int Seed, int RamMiB, int DeviceMiB, int Pages);
