namespace Hmm.SimGpu;

/// <summary>
/// A small non-reentrant spin lock for the simulated GPU's per-access critical sections (an address space's table
/// and the fault buffer's ring). Each section is a few table reads or writes, entered once or twice per simulated
/// device access, so the cost of entering dominates: one compare-exchange here, against a
/// <see cref="System.Threading.Lock"/>'s owner-thread bookkeeping, which showed as a fifth of a metadata-only run.
/// </summary>
/// <remarks>
/// Concurrency model: a holder never blocks, calls out or takes another lock but the fault buffer's (the order is
/// an address space's gate, then the fault buffer's); waiters spin, then yield and sleep (<see cref="SpinWait"/>),
/// so a preempted holder gets the core back. Not reentrant: entering twice on one thread deadlocks.
/// </remarks>
internal sealed class SpinGate
{
    private int _held;

    /// <summary>Enters the gate and returns the scope whose disposal leaves it (<c>using (gate.Enter()) { ... }</c>).</summary>
    public Scope Enter()
    {
        if (Interlocked.CompareExchange(ref _held, 1, 0) != 0)
        {
            EnterContended();
        }

        return new Scope(this);
    }

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
        public void Dispose() => Volatile.Write(ref gate._held, 0);
    }
}
