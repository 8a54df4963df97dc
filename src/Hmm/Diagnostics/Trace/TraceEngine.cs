namespace Hmm;

/// <summary>
/// Which agent a <see cref="TraceEvent"/> happened on: a CPU thread (named by <see cref="TraceEvent.ThreadId"/>)
/// or one engine of the device named by <see cref="TraceEvent.Device"/>. Part of the file format.
/// </summary>
public enum TraceEngine : byte
{
    /// <summary>A CPU thread: the kernel, a driver callback or a user process.</summary>
    Cpu = 0,

    /// <summary>The device's fault unit (fault buffer and batch servicing).</summary>
    FaultUnit = 1,

    /// <summary>The device's copy engine.</summary>
    CopyEngine = 2,

    /// <summary>The device's compute engine.</summary>
    Compute = 3,
}
