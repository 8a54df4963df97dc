using System.Runtime.CompilerServices;

namespace Hmm;

// The page lock: PG_locked in the frame's flags word, taken with an atomic OR. A contended locker spins briefly,
// then sleeps on one of a fixed set of hashed wait objects (the kernel's folio_wait_table), after setting
// PG_waiters so the unlocker knows to wake the bucket. Rule: every sleeper sets PG_waiters and re-tries the lock
// while holding its bucket's monitor; every unlock that saw PG_waiters pulses the bucket under the same monitor.
// That ordering means no wakeup is lost. A page lock is not reentrant and not owned: any thread may unlock.
public sealed partial class PhysicalMemory
{
    private const int WaitTableBits = 8;
    private static readonly object[] s_waitTable = CreateWaitTable();

    /// <summary>Tries to take the page lock without waiting (<c>trylock_page</c>).</summary>
    /// <param name="pfn">The page.</param>
    /// <returns>True when this call took the lock.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryLockPage(Pfn pfn) => TryLock(ref Frame(pfn));

    /// <summary>Takes the page lock, sleeping while another thread holds it (<c>lock_page</c>).</summary>
    /// <param name="pfn">The page.</param>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page.</exception>
    public void LockPage(Pfn pfn)
    {
        ref PageFrame frame = ref Frame(pfn);
        if (TryLock(ref frame))
        {
            return;
        }

        var spinner = default(SpinWait);
        while (!spinner.NextSpinWillYield)
        {
            spinner.SpinOnce();
            if (TryLock(ref frame))
            {
                return;
            }
        }

        object bucket = WaitBucket(pfn);
        lock (bucket)
        {
            while (true)
            {
                Interlocked.Or(ref frame._flags, (ulong)PageFlags.Waiters);
                if (TryLock(ref frame))
                {
                    return;
                }

                Monitor.Wait(bucket);
            }
        }
    }

    /// <summary>Releases the page lock and wakes sleepers (<c>unlock_page</c>).</summary>
    /// <param name="pfn">The page.</param>
    /// <exception cref="KernelBugException">The page is not locked; nothing changes.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page.</exception>
    public void UnlockPage(Pfn pfn)
    {
        ref PageFrame frame = ref Frame(pfn);
        ulong old = Interlocked.And(ref frame._flags, ~(ulong)(PageFlags.Locked | PageFlags.Waiters));
        if ((old & (ulong)PageFlags.Locked) == 0)
        {
            // Put back a waiters bit this call may have cleared; it was not ours to clear.
            Interlocked.Or(ref frame._flags, old & (ulong)PageFlags.Waiters);
            ThrowHelper.ThrowUnlockOfUnlockedPage(pfn);
        }

        if ((old & (ulong)PageFlags.Waiters) != 0)
        {
            object bucket = WaitBucket(pfn);
            lock (bucket)
            {
                Monitor.PulseAll(bucket);
            }
        }
    }

    /// <summary>Whether the page lock is held (<c>PageLocked</c>).</summary>
    /// <param name="pfn">The page.</param>
    /// <returns>True when locked.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page.</exception>
    public bool IsPageLocked(Pfn pfn) => Frame(pfn).IsLocked;

    /// <summary><see cref="TryLockPage"/> on a frame the caller already looked up, for the layers above's per-page loops.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool TryLockFrame(ref PageFrame frame) => TryLock(ref frame);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryLock(ref PageFrame frame) =>
        (Interlocked.Or(ref frame._flags, (ulong)PageFlags.Locked) & (ulong)PageFlags.Locked) == 0;

    private static object WaitBucket(Pfn pfn) =>
        s_waitTable[(int)((pfn.Value * 0x9E3779B97F4A7C15UL) >> (64 - WaitTableBits))];

    private static object[] CreateWaitTable()
    {
        var table = new object[1 << WaitTableBits];
        for (int i = 0; i < table.Length; i++)
        {
            table[i] = new object();
        }

        return table;
    }
}
