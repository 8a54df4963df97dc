namespace Hmm;

// Waiting for a page lock without taking it and without holding a reference (folio_wait_bit on PG_locked, as
// migration_entry_wait_on_locked does). A thread that holds a reference while it waits would look like a pin to the
// lock holder, which may be a migration checking the page's references: with several waiters nobody would progress.
public sealed partial class PhysicalMemory
{
    /// <summary>
    /// Returns once the page is not locked. The caller holds no reference: it found the page through an entry it has
    /// since let go of, so the page may be freed meanwhile; a freed page is unlocked, and the wait ends.
    /// </summary>
    /// <param name="pfn">The page.</param>
    internal void WaitOnPageUnlocked(Pfn pfn)
    {
        if (!IsPresent(pfn))
        {
            return;
        }

        // The reference into the memmap keeps its section array alive even if the range is removed meanwhile.
        ref PageFrame frame = ref Frame(pfn);
        var spinner = default(SpinWait);
        while (!spinner.NextSpinWillYield)
        {
            if ((Volatile.Read(ref frame._flags) & (ulong)PageFlags.Locked) == 0)
            {
                return;
            }

            spinner.SpinOnce();
        }

        // The same protocol as LockPage's sleepers: announce with PG_waiters, re-check under the bucket's monitor.
        object bucket = WaitBucket(pfn);
        lock (bucket)
        {
            while (true)
            {
                Interlocked.Or(ref frame._flags, (ulong)PageFlags.Waiters);
                if ((Volatile.Read(ref frame._flags) & (ulong)PageFlags.Locked) == 0)
                {
                    return;
                }

                Monitor.Wait(bucket);
            }
        }
    }
}
