namespace Hmm.Tests.Diagnostics.Trace;

/// <summary>Records what a machine's layers emit while an action runs, and reads it back through <see cref="TraceReader"/>.</summary>
internal static class TraceRecording
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

        return TraceTestKit.ReadAllAsync(stream.ToArray()).GetAwaiter().GetResult();
    }

    public static List<TraceEvent> OfKind(this List<TraceEvent> events, TraceEventKind kind) => events.FindAll(e => e.Kind == kind);
}
