namespace Hmm.SimGpu;

/// <summary>
/// A small non-reentrant spin lock for the simulated GPU's short, hot critical sections: an address space's table,
/// the fault buffer's ring, and the device memory's free pool. Each is entered once or more per simulated access or
/// page freed, so the cost of entering dominates: one compare-exchange here, against a
/// <see cref="System.Threading.Lock"/>'s owner-thread bookkeeping, which showed as a fifth of a metadata-only run.
/// A kernel executor's <see cref="SimAccessRun"/> holds the first two across a run of accesses instead.
/// </summary>
/// <remarks>
/// Concurrency model: a holder never calls the core or a driver; it takes another gate only in the order an
/// address space's gate, then the fault buffer's, and may emit a trace event (the trace writer's lock is a leaf).
/// Waiters spin, then yield and sleep (<see cref="SpinWait"/>), so a preempted holder gets the core back. Not
/// reentrant: entering twice on one thread deadlocks.
/// </remarks>
internal sealed class SpinGate
{
    private int _held;

    /// <summary>Enters the gate and returns the scope whose disposal leaves it (<c>using (gate.Enter()) { ... }</c>).</summary>
    public Scope Enter()
    {
        Acquire();
        return new Scope(this);
    }

    /// <summary>Enters the gate; the caller leaves it with <see cref="Release"/> (for a hold that spans calls).</summary>
    public void Acquire()
    {
        if (Interlocked.CompareExchange(ref _held, 1, 0) != 0)
        {
            EnterContended();
        }
    }

    /// <summary>Leaves the gate the caller entered.</summary>
    public void Release() => Volatile.Write(ref _held, 0);

    private void EnterContended()
    {
        var spin = default(SpinWait);
        do
        {
            spin.SpinOnce();
        }
        while (Volatile.Read(ref _held) != 0 || Interlocked.CompareExchange(ref _held, 1, 0) != 0);
    }

    /// <summary>Leaves the gate when disposed.</summary>
    internal readonly ref struct Scope(SpinGate gate)
    {
        public void Dispose() => gate.Release();
    }
}
