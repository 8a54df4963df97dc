using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Hmm;

/// <summary>
/// Streams a binary trace (docs/trace-format.md) back from a <see cref="PipeReader"/>, a batch of records at a
/// time, so a trace of any length is read in constant memory. Every header field and every record is validated:
/// an empty, truncated, foreign, newer-version or corrupted file throws <see cref="TraceFormatException"/>
/// naming the byte offset, and the reader never returns a partial or unchecked record.
/// </summary>
/// <remarks>
/// Not thread-safe: one consumer reads a trace. After a <see cref="TraceFormatException"/> every later read
/// throws the same exception.
/// </remarks>
public sealed class TraceReader : IDisposable, IAsyncDisposable
{
    private const int EnumerationBatch = 1024;

    private readonly PipeReader _input;
    private TraceHeader? _header;
    private long _offset;
    private long _events;
    private bool _ended;
    private bool _finished;
    private bool _disposed;
    private TraceFormatException? _failure;

    /// <summary>Creates a reader over <paramref name="input"/>; nothing is read until the first call.</summary>
    /// <param name="input">Where the trace comes from. The reader owns it and completes it when disposed.</param>
    /// <exception cref="ArgumentNullException"><paramref name="input"/> is null.</exception>
    public TraceReader(PipeReader input)
    {
        ArgumentNullException.ThrowIfNull(input);
        _input = input;
    }

    /// <summary>Creates a reader over a stream (a file, or any readable stream) through <see cref="PipeReader.Create(Stream, StreamPipeReaderOptions?)"/>.</summary>
    /// <param name="stream">The stream the trace is read from.</param>
    /// <param name="leaveOpen">Whether the stream stays open when the reader is disposed.</param>
    /// <returns>The reader.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    public static TraceReader Create(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return new TraceReader(PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, leaveOpen: leaveOpen)));
    }

    /// <summary>Records read so far.</summary>
    public long EventsRead => _events;

    /// <summary>Reads and validates the header, once; later calls return it again.</summary>
    /// <param name="cancellationToken">Cancels the wait for data.</param>
    /// <returns>The header.</returns>
    /// <exception cref="TraceFormatException">The file is empty, shorter than a header, or its header is not a valid version-1 header.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the reader is disposed.</exception>
    public async ValueTask<TraceHeader> ReadHeaderAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        if (_header is { } known)
        {
            return known;
        }

        while (true)
        {
            ReadResult result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            if (buffer.Length >= TraceFormat.HeaderSize)
            {
                TraceHeader header = ParseHeader(buffer);
                _input.AdvanceTo(buffer.GetPosition(TraceFormat.HeaderSize));
                _offset = TraceFormat.HeaderSize;
                _header = header;
                return header;
            }

            if (result.IsCompleted)
            {
                throw Fail(0, buffer.Length == 0
                    ? "the file is empty: there is no trace header"
                    : $"the file ends inside the header: {buffer.Length} of {TraceFormat.HeaderSize} bytes");
            }

            ThrowIfCanceled(result, buffer);
            _input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>
    /// Reads the next records into <paramref name="destination"/>, after reading the header if that has not been
    /// done. Returns as soon as at least one record is available.
    /// </summary>
    /// <param name="destination">Where the records go; at most its length are read.</param>
    /// <param name="cancellationToken">Cancels the wait for data.</param>
    /// <returns>The number of records read: at least 1, or 0 at the end of the trace.</returns>
    /// <exception cref="TraceFormatException">The header or a record is invalid, or the file ends inside a record.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: <paramref name="destination"/> is empty, or the reader is disposed.</exception>
    public async ValueTask<int> ReadAsync(Memory<TraceEvent> destination, CancellationToken cancellationToken = default)
    {
        if (destination.IsEmpty)
        {
            throw new HmmException(Errno.EINVAL, "the destination has room for no records");
        }

        await ReadHeaderAsync(cancellationToken).ConfigureAwait(false);
        while (true)
        {
            if (_ended)
            {
                await ExpectNothingAfterEndAsync(cancellationToken).ConfigureAwait(false);
                return 0;
            }

            ReadResult result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            int consumed = Decode(buffer, destination.Span, out int count);
            if (consumed > 0)
            {
                _input.AdvanceTo(buffer.GetPosition(consumed));
                if (count > 0)
                {
                    return count;
                }

                continue;
            }

            if (result.IsCompleted)
            {
                throw Fail(_offset, buffer.Length > 0
                    ? $"the file ends inside a record: {buffer.Length} of {TraceFormat.RecordSize} bytes"
                    : "the file ends without the end record: it was truncated, or its writer was never disposed");
            }

            ThrowIfCanceled(result, buffer);
            _input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Streams every record of the trace, reading it in batches.</summary>
    /// <param name="cancellationToken">Cancels the enumeration.</param>
    /// <returns>The records, in file order.</returns>
    /// <exception cref="TraceFormatException">As <see cref="ReadAsync"/>, when the enumeration reaches the fault.</exception>
    public async IAsyncEnumerable<TraceEvent> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var batch = new TraceEvent[EnumerationBatch];
        int count;
        while ((count = await ReadAsync(batch, cancellationToken).ConfigureAwait(false)) > 0)
        {
            for (int i = 0; i < count; i++)
            {
                yield return batch[i];
            }
        }
    }

    /// <summary>Completes the pipe (closing the stream for <see cref="Create(Stream, bool)"/> unless it was left open). Later calls do nothing.</summary>
    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _input.Complete();
        }
    }

    /// <summary>Completes the pipe asynchronously. Later calls do nothing.</summary>
    /// <returns>A task that completes when the pipe is completed.</returns>
    public async ValueTask DisposeAsync()
    {
        if (!_disposed)
        {
            _disposed = true;
            await _input.CompleteAsync().ConfigureAwait(false);
        }
    }

    private TraceHeader ParseHeader(ReadOnlySequence<byte> buffer)
    {
        Span<byte> header = stackalloc byte[TraceFormat.HeaderSize];
        buffer.Slice(0, TraceFormat.HeaderSize).CopyTo(header);
        return TraceFormat.ReadHeader(header, out long faultOffset, out string? reason) ?? throw Fail(faultOffset, reason!);
    }

    // Validates and copies whole records from the front of the buffer, stopping after the end record; returns
    // the bytes consumed, and in count the event records copied.
    private int Decode(ReadOnlySequence<byte> buffer, Span<TraceEvent> destination, out int count)
    {
        int available = (int)Math.Min(destination.Length + 1L, buffer.Length / TraceFormat.RecordSize);
        Span<byte> record = stackalloc byte[TraceFormat.RecordSize];
        ReadOnlySequence<byte> rest = buffer;
        count = 0;
        for (int i = 0; i < available; i++)
        {
            rest.Slice(0, TraceFormat.RecordSize).CopyTo(record);
            rest = rest.Slice(TraceFormat.RecordSize);
            bool isEnd = TraceFormat.IsEnd(record);
            if (!isEnd && count == destination.Length)
            {
                break;
            }

            int fieldOffset;
            string? reason = isEnd
                ? TraceFormat.ValidateRecordChecksum(record, out fieldOffset) ?? TraceFormat.ValidateEnd(record, _events, out fieldOffset)
                : TraceFormat.ValidateRecord(record, (uint)_events, out fieldOffset);
            if (reason is not null)
            {
                throw Fail(_offset + fieldOffset, $"record {_events}: {reason}");
            }

            _offset += TraceFormat.RecordSize;
            if (isEnd)
            {
                _ended = true;
                return (count + 1) * TraceFormat.RecordSize;
            }

            record[TraceFormat.ChecksumOffset..].Clear();
            destination[count++] = MemoryMarshal.Read<TraceEvent>(record);
            _events++;
        }

        return count * TraceFormat.RecordSize;
    }

    private async ValueTask ExpectNothingAfterEndAsync(CancellationToken cancellationToken)
    {
        while (!_finished)
        {
            ReadResult result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            ReadOnlySequence<byte> buffer = result.Buffer;
            if (buffer.Length > 0)
            {
                throw Fail(_offset, $"{buffer.Length} bytes follow the end record");
            }

            _input.AdvanceTo(buffer.End);
            if (result.IsCompleted)
            {
                _finished = true;
            }
            else
            {
                ThrowIfCanceled(result, buffer);
            }
        }
    }

    private TraceFormatException Fail(long offset, string reason)
    {
        _failure = new TraceFormatException(offset, reason);
        return _failure;
    }

    private void ThrowIfCanceled(ReadResult result, ReadOnlySequence<byte> buffer)
    {
        if (result.IsCanceled)
        {
            _input.AdvanceTo(buffer.Start, buffer.End);
            throw new OperationCanceledException("the pending read of the trace pipe was canceled");
        }
    }

    private void ThrowIfUnusable()
    {
        if (_failure is not null)
        {
            throw _failure;
        }

        if (_disposed)
        {
            throw new HmmException(Errno.EINVAL, "the trace reader is disposed");
        }
    }
}
