namespace Hmm.SimGpu;

/// <summary>The access pattern of the GPU kernels a <see cref="Simulation"/> runs.</summary>
public enum WorkloadKind
{
    /// <summary>
    /// STREAM triad: the buffer holds three arrays a, b and c of 64-bit integers; every work item reads one page of
    /// a and one of b and writes c = a + 3b to the page of c at the same index. Sequential, bandwidth-bound.
    /// </summary>
    Stream = 0,

    /// <summary>
    /// Uniform random gather: the buffer holds an input and an output half; every work item picks a page of the
    /// input uniformly at random (from the seed), reads it and writes a function of it to the output page at the
    /// same index. No locality beyond the page.
    /// </summary>
    Random = 1,

    /// <summary>
    /// Five-point stencil over a 2-D grid of 64-bit integers, one 4 KiB page per row: every work item reads rows
    /// y-1, y and y+1 of the input grid and writes row y of the output grid (edges clamped). Each input page is
    /// read by three neighbouring items.
    /// </summary>
    Stencil = 2,
}
