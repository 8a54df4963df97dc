namespace Hmm.Devices;

/// <summary>
/// Simulated time in nanoseconds, shared by every device of one simulation: it moves only when work is charged
/// on it, never with the wall clock, so the same run gives the same times.
/// </summary>
/// <remarks>Concurrency model: thread-safe; time never goes backwards.</remarks>
public interface IVirtualClock
{
    /// <summary>The current virtual time, in nanoseconds since the simulation began.</summary>
    long Now { get; }

    /// <summary>Moves the clock forward by <paramref name="nanoseconds"/> (host-side work a driver charges).</summary>
    /// <param name="nanoseconds">0 or more.</param>
    /// <returns>The new time.</returns>
    /// <exception cref="HmmException">EINVAL for a negative duration.</exception>
    long Advance(long nanoseconds);

    /// <summary>Moves the clock to <paramref name="time"/> if that is later (waiting for a completion).</summary>
    /// <param name="time">A virtual time.</param>
    /// <returns>The new time, never earlier than before.</returns>
    long AdvanceTo(long time);
}
