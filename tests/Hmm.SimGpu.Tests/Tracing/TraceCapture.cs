namespace Hmm.SimGpu.Tests.Tracing;

/// <summary>Records what a machine's layers emit while an action runs, and reads it back through <see cref="TraceReader"/>.</summary>
internal static class TraceCapture
{
    public static List<TraceEvent> Record(PhysicalMemory memory, Action action)
    {
        using var stream = new MemoryStream();
        using (var writer = TraceWriter.Create(stream, leaveOpen: true))
        {
            memory.Trace.Attach(writer);
            try
            {
                action();
            }
            finally
            {
                memory.Trace.Detach();
            }
        }

        return Read(stream.ToArray());
    }

    public static List<TraceEvent> Read(byte[] file)
    {
        var events = new List<TraceEvent>();
        using var reader = TraceReader.Create(new MemoryStream(file));
        IAsyncEnumerator<TraceEvent> all = reader.ReadAllAsync().GetAsyncEnumerator();
        try
        {
            while (all.MoveNextAsync().AsTask().GetAwaiter().GetResult())
            {
                events.Add(all.Current);
            }
        }
        finally
        {
            all.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        return events;
    }

    public static List<TraceEvent> OfKind(this List<TraceEvent> events, TraceEventKind kind) => events.FindAll(e => e.Kind == kind);
}
