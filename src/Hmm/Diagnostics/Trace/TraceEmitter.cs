using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// The hook a simulation layer emits trace events through. With no <see cref="TraceWriter"/> attached, tracing
/// is off and costs one volatile read: layers test <see cref="IsEnabled"/> before building an event,
/// <c>if (trace.IsEnabled) trace.Emit(TraceEvent.CpuFault(address, flags, result, now));</c>, so nothing else
/// runs. With a writer attached, <see cref="Emit"/> writes the event through it, allocation-free.
/// </summary>
/// <remarks>
/// One emitter serves one simulated machine; several machines in one process trace independently. Attaching
/// and detaching may happen at any time from any thread. To end a trace: <see cref="Detach"/>, then dispose the
/// writer. An event emitted after the trace has ended (a racing thread emitting after the writer was disposed,
/// or after the pipe's reader completed) is not recorded, and never throws into the emitting layer.
/// </remarks>
public sealed class TraceEmitter
{
    private TraceWriter? _writer;
    private Func<long>? _virtualClock;

    /// <summary>Whether a writer is attached: false means tracing is off.</summary>
    public bool IsEnabled
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref _writer) is not null;
    }

    /// <summary>The attached writer, or null when tracing is off.</summary>
    public TraceWriter? Writer => Volatile.Read(ref _writer);

    /// <summary>
    /// The time on the simulation's virtual clock, in nanoseconds, for the events of layers that have no clock
    /// of their own (the core): the clock set by <see cref="UseVirtualClock"/>, or 0 when none is. Never throws.
    /// </summary>
    public long VirtualNow
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref _virtualClock) is { } clock ? clock() : 0;
    }

    /// <summary>
    /// Sets the virtual clock <see cref="VirtualNow"/> reads. The first clock set stays: devices that share a
    /// machine share one clock, so a device setting the clock it was built with changes nothing after the first.
    /// </summary>
    /// <param name="now">Reads the virtual clock in nanoseconds; must be cheap, thread-safe and never throw.</param>
    /// <returns>True if <paramref name="now"/> is now the clock; false if another was set before (it stays).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="now"/> is null.</exception>
    public bool UseVirtualClock(Func<long> now)
    {
        ArgumentNullException.ThrowIfNull(now);
        return Interlocked.CompareExchange(ref _virtualClock, now, null) is null;
    }

    /// <summary>Starts tracing into <paramref name="writer"/>.</summary>
    /// <param name="writer">The writer every emitted event goes to.</param>
    /// <exception cref="ArgumentNullException"><paramref name="writer"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EBUSY"/>: another writer is attached (detach it first); nothing changes.</exception>
    public void Attach(TraceWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        TraceWriter? previous = Interlocked.CompareExchange(ref _writer, writer, null);
        if (previous is not null && !ReferenceEquals(previous, writer))
        {
            throw new HmmException(Errno.EBUSY, "a trace writer is already attached to this emitter");
        }
    }

    /// <summary>Stops tracing. Never throws.</summary>
    /// <returns>The writer that was attached (its owner disposes it), or null if none was.</returns>
    public TraceWriter? Detach() => Interlocked.Exchange(ref _writer, null);

    /// <summary>Records <paramref name="traceEvent"/> if tracing is on; does nothing otherwise.</summary>
    /// <param name="traceEvent">The event, built by one of the <see cref="TraceEvent"/> factories.</param>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event has no kind (<c>default(TraceEvent)</c>).</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Emit(in TraceEvent traceEvent)
    {
        TraceWriter? writer = Volatile.Read(ref _writer);
        if (writer is not null)
        {
            writer.TryWrite(in traceEvent);
        }
    }
}
