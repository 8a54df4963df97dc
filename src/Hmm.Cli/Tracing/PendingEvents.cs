namespace Hmm.Cli.Tracing;

/// <summary>
/// Events waiting, per device, to be linked to a later event (device faults waiting for the batch that services
/// them, migrations waiting for the batch whose window holds them). Each device's queue holds at most
/// <see cref="Capacity"/> events: past that the oldest is given up unlinked, so memory stays bounded whatever the
/// trace (a real fault buffer never holds that many).
/// </summary>
internal sealed class PendingEvents
{
    public const int Capacity = 1 << 16;

    private readonly Dictionary<ushort, Queue<TraceEvent>> _queues = [];

    public int Count { get; private set; }

    /// <summary>Queues the event; when its device's queue is full, returns true with the oldest event, now given up.</summary>
    public bool Add(in TraceEvent traceEvent, out TraceEvent givenUp)
    {
        if (!_queues.TryGetValue(traceEvent.Device, out Queue<TraceEvent>? queue))
        {
            queue = new Queue<TraceEvent>();
            _queues.Add(traceEvent.Device, queue);
        }

        bool full = queue.Count == Capacity;
        givenUp = full ? queue.Dequeue() : default;
        queue.Enqueue(traceEvent);
        Count += full ? 0 : 1;
        return full;
    }

    /// <summary>Moves into <paramref name="taken"/>, oldest first, the queued events of <paramref name="device"/> at or before <paramref name="untilNs"/>.</summary>
    public void TakeUntil(ushort device, long untilNs, List<TraceEvent> taken)
    {
        if (!_queues.TryGetValue(device, out Queue<TraceEvent>? queue))
        {
            return;
        }

        // Events of one device are queued in the order the device recorded them, which is its time order.
        while (queue.Count > 0 && queue.Peek().VirtualNs <= untilNs)
        {
            taken.Add(queue.Dequeue());
            Count--;
        }
    }

    /// <summary>Moves every queued event into <paramref name="taken"/> (at the end of the trace).</summary>
    public void TakeAll(List<TraceEvent> taken)
    {
        foreach (Queue<TraceEvent> queue in _queues.Values)
        {
            while (queue.Count > 0)
            {
                taken.Add(queue.Dequeue());
            }
        }

        Count = 0;
    }
}
