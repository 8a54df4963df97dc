namespace Hmm.Tests;

/// <summary>
/// Measures managed allocation of a hot path on the current thread. The runtime may allocate once on a thread
/// for its own reasons (tiering, lazily created thread state) while a window is measured; a path that allocates
/// per call allocates in every window, so the fewest bytes over a few windows is what the path itself costs.
/// </summary>
internal static class AllocationProbe
{
    public static long FewestBytesAllocated(Action window, int windows = 3)
    {
        long fewest = long.MaxValue;
        for (int i = 0; i < windows && fewest != 0; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            window();
            fewest = Math.Min(fewest, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        return fewest;
    }
}
