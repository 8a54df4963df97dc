namespace Hmm;

/// <summary>
/// A small sleepable read-copy-update domain (the kernel's SRCU, as <c>mm/mmu_notifier.c</c> uses it for the
/// classic notifier list): readers mark a section cheaply and may sleep inside it; <see cref="Synchronize"/>
/// returns only after every section that began before the call has ended.
/// </summary>
/// <remarks>
/// <para>Concurrency model: two reader counters, selected by the low bit of <c>_phase</c>. A reader increments
/// the counter of the phase it read and decrements the same one when done. <see cref="Synchronize"/> (one at a
/// time, under <c>_writerLock</c>) first drains the inactive counter (late readers that read an old phase),
/// flips the phase, then drains the previously active one. New readers go to the new phase, so the drain ends
/// even under a steady stream of readers. A writer publishes its change before calling <see cref="Synchronize"/>;
/// a reader that incremented after the drain check therefore reads the published state.</para>
/// <para>Waking rule: a synchronizer announces itself in <c>_synchronizerWaiting</c> (interlocked) and re-checks
/// the counter while holding <c>_gate</c>; a reader whose decrement reaches zero reads the flag afterwards and,
/// if set, pulses <c>_gate</c>. Both sides use full fences, so at least one of them sees the other: no lost
/// wake-up, no spinning.</para>
/// </remarks>
internal sealed class SleepableRcu
{
    private readonly long[] _readers = new long[2];
    private readonly object _gate = new();
    private readonly object _writerLock = new();
    private int _phase;
    private int _synchronizerWaiting;

    /// <summary>Enters a read-side section (<c>srcu_read_lock</c>); pass the result to <see cref="ReadUnlock"/>.</summary>
    public int ReadLock()
    {
        int phase = Volatile.Read(ref _phase) & 1;
        Interlocked.Increment(ref _readers[phase]);
        return phase;
    }

    /// <summary>Leaves a read-side section (<c>srcu_read_unlock</c>).</summary>
    public void ReadUnlock(int phase)
    {
        if (Interlocked.Decrement(ref _readers[phase]) == 0 && Volatile.Read(ref _synchronizerWaiting) != 0)
        {
            lock (_gate)
            {
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>Waits until every read-side section that began before this call has ended (<c>synchronize_srcu</c>).</summary>
    public void Synchronize()
    {
        lock (_writerLock)
        {
            int active = _phase & 1;
            WaitForReaders(active ^ 1);
            Interlocked.Exchange(ref _phase, active ^ 1);
            WaitForReaders(active);
        }
    }

    private void WaitForReaders(int phase)
    {
        if (Volatile.Read(ref _readers[phase]) == 0)
        {
            return;
        }

        lock (_gate)
        {
            Interlocked.Exchange(ref _synchronizerWaiting, 1);
            while (Volatile.Read(ref _readers[phase]) != 0)
            {
                Monitor.Wait(_gate);
            }

            Volatile.Write(ref _synchronizerWaiting, 0);
        }
    }
}
