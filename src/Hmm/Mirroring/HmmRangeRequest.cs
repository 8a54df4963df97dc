namespace Hmm;

/// <summary>
/// A reusable, heap-allocated <c>struct hmm_range</c> for drivers whose mirror loop awaits: it owns its PFN array
/// and keeps the notifier, bounds, request flags, device-private owner and the sequence of the current attempt,
/// so the state survives an <c>await</c> and a retry needs nothing re-created. <see cref="HmmRange"/> stays the
/// allocation-free form for synchronous code; <see cref="Fault"/> runs it over this object's array.
/// </summary>
/// <remarks>
/// <para>The retry pattern (the kernel's, with the waits made asynchronous). The driver's invalidate callback
/// takes <c>deviceLock</c> and calls <see cref="MmuIntervalNotifier.SetSequence"/> under it:</para>
/// <code>
/// var request = new HmmRangeRequest(notifier, start, end) { DefaultFlags = HmmPfn.RequestFault };
/// long deadline = Environment.TickCount64 + (long)HmmRange.DefaultTimeout.TotalMilliseconds;
/// while (true)
/// {
///     if (Environment.TickCount64 &gt; deadline) return Errno.EBUSY;
///     request.ReadBegin();                        // mmu_interval_read_begin (may sleep)
///     Errno error;
///     using (mm.MmapReadLock())                   // never held across an await
///     {
///         error = request.Fault();                // hmm_range_fault
///     }
///
///     if (error == Errno.EBUSY) continue;         // an invalidation hit the range: start again
///     if (error != Errno.None) return error;
///     await deviceLock.WaitAsync();               // the lock the invalidate callback takes
///     try
///     {
///         if (request.ReadRetry()) continue;      // invalidated since ReadBegin: the PFNs are stale
///         ProgramDevice(request.HmmPfns);         // still under deviceLock
///         return Errno.None;
///     }
///     finally
///     {
///         deviceLock.Release();
///     }
/// }
/// </code>
/// <para>Per-page request flags (with <see cref="PfnFlagsMask"/>) are read from <see cref="HmmPfns"/> on input,
/// and a fault overwrites them with outputs, so a driver that uses them writes them again before each attempt;
/// with <see cref="DefaultFlags"/> alone nothing needs resetting.</para>
/// <para>Concurrency model: none inside. One attempt at a time; the object may move between threads across
/// awaits, but the mmap lock must be taken and released on one thread around <see cref="Fault"/>.</para>
/// </remarks>
public sealed class HmmRangeRequest
{
    private readonly ulong[] _pfns;

    /// <summary>Creates a request for <c>[start, end)</c> with a PFN array of one entry per page, all zero.</summary>
    /// <param name="notifier">The interval notifier covering the range; its address space is the one walked.</param>
    /// <param name="start">The first address, page aligned.</param>
    /// <param name="end">One past the last address, page aligned, above <paramref name="start"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="notifier"/> is null.</exception>
    /// <exception cref="HmmException">Error model: invalid argument. <see cref="Errno.EINVAL"/>: the range is
    /// empty, reversed or unaligned, or has more pages than an array can hold.</exception>
    public HmmRangeRequest(MmuIntervalNotifier notifier, ulong start, ulong end)
    {
        ArgumentNullException.ThrowIfNull(notifier);
        if (!PageSize.IsAligned(start) || !PageSize.IsAligned(end) || end <= start)
        {
            MirroringThrowHelper.ThrowBadRange(start, end);
        }

        ulong pages = (end - start) >> PageSize.Shift;
        if (pages > (ulong)Array.MaxLength)
        {
            MirroringThrowHelper.ThrowRangeTooLarge(start, end);
        }

        Notifier = notifier;
        Start = start;
        End = end;
        _pfns = new ulong[pages];
    }

    /// <summary>The interval notifier covering the range (<c>notifier</c>).</summary>
    public MmuIntervalNotifier Notifier { get; }

    /// <summary>The first address (<c>start</c>).</summary>
    public ulong Start { get; }

    /// <summary>One past the last address (<c>end</c>).</summary>
    public ulong End { get; }

    /// <summary>The entries, one per page, input and output (<c>hmm_pfns</c>); see <see cref="HmmPfn"/>. A view of
    /// the array this object owns: read it synchronously, it does not move.</summary>
    public Span<ulong> HmmPfns => _pfns;

    /// <summary>Request flags applied to every page (<c>default_flags</c>).</summary>
    public ulong DefaultFlags { get; set; }

    /// <summary>Which bits of each entry's input are per-page request flags (<c>pfn_flags_mask</c>).</summary>
    public ulong PfnFlagsMask { get; set; }

    /// <summary>Device-private pages whose pagemap owner is this object are reported, never faulted (<c>dev_private_owner</c>).</summary>
    public object? DevicePrivateOwner { get; set; }

    /// <summary>The sequence the current attempt started with (<c>notifier_seq</c>), set by <see cref="ReadBegin"/>.</summary>
    public ulong NotifierSequence { get; set; }

    /// <summary>
    /// Starts an attempt (<c>range.notifier_seq = mmu_interval_read_begin(notifier)</c>): stores the sequence
    /// in <see cref="NotifierSequence"/>. Sleeps while an invalidation of the interval is in progress.
    /// </summary>
    /// <returns>The sequence, also stored.</returns>
    /// <exception cref="KernelBugException">Error model: broken invariant. As <see cref="MmuIntervalNotifier.ReadBegin"/>.</exception>
    public ulong ReadBegin() => NotifierSequence = Notifier.ReadBegin();

    /// <summary>
    /// Whether an invalidation hit the interval since <see cref="ReadBegin"/> (<c>mmu_interval_read_retry</c>),
    /// so the entries must be thrown away. Call it under the driver lock the invalidate callback takes.
    /// </summary>
    /// <returns>True when the caller must start again.</returns>
    public bool ReadRetry() => Notifier.ReadRetry(NotifierSequence);

    /// <summary>A lockless hint that a retry is already due (<c>mmu_interval_check_retry</c>); false proves nothing.</summary>
    /// <returns>True when an invalidation has certainly hit the interval since <see cref="ReadBegin"/>.</returns>
    public bool CheckRetry() => Notifier.CheckRetry(NotifierSequence);

    /// <summary>
    /// Runs <see cref="HmmRange.Fault"/> over this request (<c>hmm_range_fault</c>). The caller holds the mmap
    /// lock. Allocates nothing.
    /// </summary>
    /// <returns>Error model: the kernel's return code is returned, as <see cref="HmmRange.Fault"/>.</returns>
    /// <exception cref="HmmException">Error model: invalid state. As <see cref="HmmRange.Fault"/>.</exception>
    /// <exception cref="KernelBugException">Error model: broken invariant. The mmap lock is not held.</exception>
    public Errno Fault() => new HmmRange
    {
        Notifier = Notifier,
        NotifierSequence = NotifierSequence,
        Start = Start,
        End = End,
        HmmPfns = _pfns,
        DefaultFlags = DefaultFlags,
        PfnFlagsMask = PfnFlagsMask,
        DevicePrivateOwner = DevicePrivateOwner,
    }.Fault();
}
