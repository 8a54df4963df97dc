namespace Hmm.Cli.Tracing;

/// <summary>Streams a trace through <see cref="TraceReader"/> into consumers, a batch of records at a time, so memory stays constant whatever the trace's length.</summary>
internal static class TraceInput
{
    private const int BatchSize = 4096;

    /// <summary>Reads every event of <paramref name="stream"/> into each consumer, in file order.</summary>
    /// <returns>The trace's header.</returns>
    /// <exception cref="TraceFormatException">The stream is not a valid trace (the message names the byte offset).</exception>
    public static async Task<TraceHeader> ReadAsync(Stream stream, IReadOnlyList<ITraceConsumer> consumers, CancellationToken cancellationToken)
    {
        await using TraceReader reader = TraceReader.Create(stream, leaveOpen: true);
        return await ReadAsync(reader, consumers, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads every event of <paramref name="reader"/> into each consumer, in file order.</summary>
    /// <returns>The trace's header.</returns>
    /// <exception cref="TraceFormatException">The input is not a valid trace (the message names the byte offset).</exception>
    public static async Task<TraceHeader> ReadAsync(TraceReader reader, IReadOnlyList<ITraceConsumer> consumers, CancellationToken cancellationToken)
    {
        TraceHeader header = await reader.ReadHeaderAsync(cancellationToken).ConfigureAwait(false);
        var batch = new TraceEvent[BatchSize];
        int count;
        while ((count = await reader.ReadAsync(batch, cancellationToken).ConfigureAwait(false)) > 0)
        {
            for (int c = 0; c < consumers.Count; c++)
            {
                ITraceConsumer consumer = consumers[c];
                for (int i = 0; i < count; i++)
                {
                    consumer.Add(in batch[i]);
                }
            }
        }

        return header;
    }
}
