using FluentAssertions;

namespace Hmm.Tests;

/// <summary>One call the address space made into its notifier chain.</summary>
internal readonly record struct NotifierCall(NotifierCallKind Kind, ulong Start, ulong End, MmuNotifierEvent Event)
{
    /// <summary>The start and the end of one invalidation, as a balanced chain records them.</summary>
    public static NotifierCall[] Pair(ulong start, ulong end, MmuNotifierEvent @event) =>
        [new(NotifierCallKind.Start, start, end, @event), new(NotifierCallKind.End, start, end, @event)];
}

internal enum NotifierCallKind
{
    Start,
    End,
    Release,
}

/// <summary>A notifier chain that records every call, for checking which invalidations an operation issues.</summary>
internal sealed class RecordingNotifierChain : IMmNotifierChain
{
    private readonly Lock _lock = new();
    private readonly List<NotifierCall> _calls = [];

    public static RecordingNotifierChain InstallOn(Mm mm)
    {
        var chain = new RecordingNotifierChain();
        mm.GetOrSetNotifiers(chain).Should().BeSameAs(chain);
        return chain;
    }

    public IReadOnlyList<NotifierCall> Calls
    {
        get
        {
            lock (_lock)
            {
                return [.. _calls];
            }
        }
    }

    /// <summary>The (Start, End, Event) of every invalidation started, in order.</summary>
    public IReadOnlyList<(ulong Start, ulong End, MmuNotifierEvent Event)> Starts =>
        [.. Calls.Where(c => c.Kind == NotifierCallKind.Start).Select(c => (c.Start, c.End, c.Event))];

    public int Releases => Calls.Count(c => c.Kind == NotifierCallKind.Release);

    public void Clear()
    {
        lock (_lock)
        {
            _calls.Clear();
        }
    }

    public bool InvalidateRangeStart(in MmuNotifierRange range)
    {
        Add(new NotifierCall(NotifierCallKind.Start, range.Start, range.End, range.Event));
        return true;
    }

    public void InvalidateRangeEnd(in MmuNotifierRange range) => Add(new NotifierCall(NotifierCallKind.End, range.Start, range.End, range.Event));

    public void Release() => Add(new NotifierCall(NotifierCallKind.Release, 0, 0, MmuNotifierEvent.Release));

    /// <summary>Asserts every start is closed by an end of the same range and event, properly nested.</summary>
    public void ShouldBeBalanced()
    {
        var open = new Stack<NotifierCall>();
        foreach (NotifierCall call in Calls)
        {
            if (call.Kind == NotifierCallKind.Start)
            {
                open.Push(call);
            }
            else if (call.Kind == NotifierCallKind.End)
            {
                open.Should().NotBeEmpty($"{call} ends an invalidation that was started");
                NotifierCall start = open.Pop();
                (call.Start, call.End, call.Event).Should().Be((start.Start, start.End, start.Event), "an end matches the latest open start");
            }
        }

        open.Should().BeEmpty("every started invalidation ended");
    }

    private void Add(NotifierCall call)
    {
        lock (_lock)
        {
            _calls.Add(call);
        }
    }
}
