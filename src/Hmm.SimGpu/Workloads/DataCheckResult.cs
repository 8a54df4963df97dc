namespace Hmm.SimGpu;

/// <summary>Whether the data the GPU kernels computed was what the CPU expected when it read it back.</summary>
public enum DataCheckResult
{
    /// <summary>Not checked: the machine was metadata-only, so pages carry no bytes.</summary>
    Skipped = 0,

    /// <summary>Every output page the CPU read back held exactly the expected values.</summary>
    Passed = 1,

    /// <summary>At least one output page held a wrong value (see <see cref="SimulationReport.DataErrors"/>).</summary>
    Failed = 2,
}
