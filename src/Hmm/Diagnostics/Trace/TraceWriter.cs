using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Runtime.InteropServices;

namespace Hmm;

/// <summary>
/// Writes a binary trace (docs/trace-format.md) to a <see cref="PipeWriter"/>: the header when created, then one
/// 64-byte record per <see cref="Write"/>, stamped with the wall clock and a sequence number and checksummed.
/// Writing an event allocates nothing: the record is written straight into the pipe's buffer.
/// </summary>
/// <remarks>
/// <para><b>Concurrency.</b> Any number of threads may call <see cref="Write"/> at once. Each call holds a short
/// gate (a <see cref="SemaphoreSlim"/>) while it stamps and copies its record into the pipe's buffer, so records
/// appear whole, in the order the calls took the gate, with consecutive sequence numbers. Every 64 KiB the
/// writing thread flushes the pipe while holding the gate, so the buffer never grows without bound; if the pipe
/// applies back-pressure (a <see cref="Pipe"/> whose reader is behind), that thread waits for the reader, which
/// must therefore run on another thread. <see cref="Flush"/>, <see cref="FlushAsync"/> and the disposal take
/// the same gate.</para>
/// <para><b>Completion.</b> <see cref="Dispose"/> and <see cref="DisposeAsync"/> append the end record (which
/// a reader requires: a trace without it is reported as truncated), flush what is buffered and complete the
/// <see cref="PipeWriter"/> (which, for <see cref="Create(Stream, bool)"/>, flushes and, unless
/// <c>leaveOpen</c>, closes the stream).</para>
/// </remarks>
public sealed class TraceWriter : IDisposable, IAsyncDisposable
{
    private const int FlushThreshold = 64 * 1024;

    private readonly PipeWriter _output;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly long _startTimestamp;
    private long _eventsWritten;
    private int _unflushed;
    private bool _closed;
    private bool _readerCompleted;

    /// <summary>Creates a writer over <paramref name="output"/> and writes the file header into it.</summary>
    /// <param name="output">Where the trace goes. The writer owns it from now on and completes it when disposed.</param>
    /// <exception cref="ArgumentNullException"><paramref name="output"/> is null.</exception>
    public TraceWriter(PipeWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        _output = output;
        StartTime = DateTimeOffset.UtcNow;
        _startTimestamp = Stopwatch.GetTimestamp();
        TraceFormat.WriteHeader(_output.GetSpan(TraceFormat.HeaderSize), StartTime);
        _output.Advance(TraceFormat.HeaderSize);
        _unflushed = TraceFormat.HeaderSize;
    }

    /// <summary>Creates a writer over a stream (a file, or any writable stream) through <see cref="PipeWriter.Create(Stream, StreamPipeWriterOptions?)"/>.</summary>
    /// <param name="stream">The stream the trace is written to.</param>
    /// <param name="leaveOpen">Whether the stream stays open when the writer is disposed.</param>
    /// <returns>The writer, its header already buffered.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    public static TraceWriter Create(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return new TraceWriter(PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: leaveOpen)));
    }

    /// <summary>When the writer was created: the header's start time, from which records' <see cref="TraceEvent.WallTicks"/> count.</summary>
    public DateTimeOffset StartTime { get; }

    /// <summary>Records written so far (the header not included).</summary>
    public long EventsWritten => Volatile.Read(ref _eventsWritten);

    /// <summary>Appends one event, stamping its <see cref="TraceEvent.WallTicks"/> and <see cref="TraceEvent.Sequence"/>. Thread-safe; allocates nothing.</summary>
    /// <param name="traceEvent">The event, built by one of the <see cref="TraceEvent"/> factories.</param>
    /// <exception cref="HmmException">
    /// <see cref="Errno.EINVAL"/>: the event has no kind (<c>default(TraceEvent)</c>), or the writer is disposed.
    /// <see cref="Errno.EIO"/>: the pipe's reader has completed, so nothing more can be written.
    /// Nothing is written in either case.
    /// </exception>
    public void Write(in TraceEvent traceEvent)
    {
        if (!TryWrite(in traceEvent))
        {
            ThrowIfClosed();
            ThrowIfReaderCompleted();
        }
    }

    /// <summary>
    /// Writes the event unless the trace has ended, that is, the writer is disposed or its pipe's reader has
    /// completed: then returns false and writes nothing.
    /// </summary>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event has no kind.</exception>
    internal bool TryWrite(in TraceEvent traceEvent)
    {
        if (traceEvent.Kind == TraceEventKind.None || (int)traceEvent.Kind >= TraceFormat.KindCount)
        {
            throw new HmmException(Errno.EINVAL, $"event kind {(ushort)traceEvent.Kind} is not a known kind: build events with the TraceEvent factories");
        }

        _gate.Wait();
        try
        {
            if (_closed || _readerCompleted)
            {
                return false;
            }

            long wallTicks = Stopwatch.GetElapsedTime(_startTimestamp).Ticks;
            Span<byte> record = _output.GetSpan(TraceFormat.RecordSize)[..TraceFormat.RecordSize];
            TraceEvent stamped = traceEvent.Stamped((uint)_eventsWritten, wallTicks);
            MemoryMarshal.Write(record, in stamped);
            BinaryPrimitives.WriteUInt32LittleEndian(record[TraceFormat.ChecksumOffset..], TraceFormat.Checksum(record));
            _output.Advance(TraceFormat.RecordSize);
            Volatile.Write(ref _eventsWritten, _eventsWritten + 1);
            _unflushed += TraceFormat.RecordSize;
            if (_unflushed >= FlushThreshold)
            {
                FlushLocked();
            }

            return true;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Flushes the buffered records to the pipe, waiting for the pipe if it applies back-pressure.</summary>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the writer is disposed. <see cref="Errno.EIO"/>: the pipe's reader has completed.</exception>
    public void Flush()
    {
        _gate.Wait();
        try
        {
            ThrowIfClosed();
            ThrowIfReaderCompleted();
            FlushLocked();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Flushes the buffered records to the pipe asynchronously.</summary>
    /// <param name="cancellationToken">Cancels the wait for the gate or for the pipe.</param>
    /// <returns>A task that completes when the records are flushed.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the writer is disposed. <see cref="Errno.EIO"/>: the pipe's reader has completed.</exception>
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfClosed();
            ThrowIfReaderCompleted();
            Observe(await _output.FlushAsync(cancellationToken).ConfigureAwait(false));
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Appends the end record, flushes and completes the pipe. Later calls do nothing.</summary>
    public void Dispose()
    {
        _gate.Wait();
        try
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            try
            {
                if (!_readerCompleted)
                {
                    WriteEndLocked();
                    FlushLocked();
                }
            }
            finally
            {
                _output.Complete();
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Appends the end record, flushes and completes the pipe asynchronously. Later calls do nothing.</summary>
    /// <returns>A task that completes when the pipe is completed.</returns>
    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            try
            {
                if (!_readerCompleted)
                {
                    WriteEndLocked();
                    Observe(await _output.FlushAsync().ConfigureAwait(false));
                }
            }
            finally
            {
                await _output.CompleteAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    // The end record tells a reader that the trace is complete, so that a file cut at a record boundary is
    // reported as truncated rather than read as a shorter trace.
    private void WriteEndLocked()
    {
        TraceFormat.WriteEnd(_output.GetSpan(TraceFormat.RecordSize), _eventsWritten, Stopwatch.GetElapsedTime(_startTimestamp).Ticks);
        _output.Advance(TraceFormat.RecordSize);
    }

    private void FlushLocked()
    {
        ValueTask<FlushResult> pending = _output.FlushAsync();
        Observe(pending.IsCompletedSuccessfully ? pending.Result : pending.AsTask().GetAwaiter().GetResult());
    }

    private void Observe(FlushResult result)
    {
        _unflushed = 0;
        if (result.IsCompleted)
        {
            _readerCompleted = true;
        }
    }

    private void ThrowIfClosed()
    {
        if (_closed)
        {
            throw new HmmException(Errno.EINVAL, "the trace writer is disposed");
        }
    }

    private void ThrowIfReaderCompleted()
    {
        if (_readerCompleted)
        {
            throw new HmmException(Errno.EIO, "the trace pipe's reader has completed: nothing more can be written");
        }
    }
}
