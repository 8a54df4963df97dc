
namespace Hmm.Tests.Mirroring;

/// <summary>A driver-like interval callback: records each call and sets the sequence under its driver lock.</summary>
internal sealed class RecordingIntervalOps : IMmuIntervalNotifierOps
{
    private readonly List<(MmuIntervalNotifier Subscription, MmuNotifierRange Range, ulong Sequence)> _calls = [];

    public RecordingIntervalOps(List<string>? log = null)
    {
        Log = log;
    }

    public object DriverLock { get; } = new();

    public List<string>? Log { get; }

    /// <summary>Replaces the default behaviour (set the sequence, return true) when set.</summary>
    public Func<MmuIntervalNotifier, MmuNotifierRange, ulong, bool>? Behaviour { get; set; }

    public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
    {
        lock (_calls)
        {
            _calls.Add((subscription, range, currentSequence));
            Log?.Add($"interval {subscription.Start:x} {range.Event}");
        }

        if (Behaviour is { } behaviour)
        {
            return behaviour(subscription, range, currentSequence);
        }

        lock (DriverLock)
        {
            subscription.SetSequence(currentSequence);
        }

        return true;
    }

    public int CallsFor(MmuIntervalNotifier subscription)
    {
        lock (_calls)
        {
            return _calls.Count(c => ReferenceEquals(c.Subscription, subscription));
        }
    }

    public List<(MmuIntervalNotifier Subscription, MmuNotifierRange Range, ulong Sequence)> Calls()
    {
        lock (_calls)
        {
            return [.. _calls];
        }
    }
}

/// <summary>A classic notifier that appends every callback to a shared log.</summary>
internal sealed class RecordingNotifierOps : IMmuNotifierOps
{
    private readonly string _name;
    private readonly List<string> _log;

    public RecordingNotifierOps(string name, List<string> log)
    {
        _name = name;
        _log = log;
    }

    public Func<MmuNotifierRange, bool>? StartBehaviour { get; set; }

    public Action? ReleaseBehaviour { get; set; }

    public int Starts { get; private set; }

    public int Ends { get; private set; }

    public int Releases { get; private set; }

    public bool InvalidateRangeStart(in MmuNotifierRange range)
    {
        lock (_log)
        {
            Starts++;
            _log.Add($"{_name} start {range.Start:x}");
        }

        return StartBehaviour?.Invoke(range) ?? true;
    }

    public void InvalidateRangeEnd(in MmuNotifierRange range)
    {
        lock (_log)
        {
            Ends++;
            _log.Add($"{_name} end {range.Start:x}");
        }
    }

    public void Release()
    {
        lock (_log)
        {
            Releases++;
            _log.Add($"{_name} release");
        }

        ReleaseBehaviour?.Invoke();
    }
}

internal static class Threads
{
    public static readonly TimeSpan Hang = TimeSpan.FromSeconds(10);
    public static readonly TimeSpan StillBlocked = TimeSpan.FromMilliseconds(100);

    /// <summary>Runs <paramref name="action"/> on a dedicated thread (it may block).</summary>
    public static Task Run(Action action) =>
        Task.Factory.StartNew(action, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    public static Task<T> Run<T>(Func<T> func) =>
        Task.Factory.StartNew(func, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    // These tests drive real blocking threads, so they wait on tasks synchronously on purpose; the waits live
    // here, bounded, so that a hang fails the test instead of stalling the run.

    /// <summary>True when the task completes within <see cref="Hang"/>; rethrows its exception.</summary>
    public static bool Completes(Task task) => task.Wait(Hang);

    /// <summary>The task's result, waiting at most <see cref="Hang"/>.</summary>
    public static T ResultOf<T>(Task<T> task) =>
        task.Wait(Hang) ? task.Result : throw new TimeoutException("The thread did not finish: hang.");

    /// <summary>True when the task has not completed after <see cref="StillBlocked"/>.</summary>
    public static bool IsStillBlocked(Task task) => !task.Wait(StillBlocked);

    /// <summary>True when every task completes within <paramref name="timeout"/>.</summary>
    public static bool AllComplete(Task[] tasks, TimeSpan timeout) => Task.WaitAll(tasks, timeout);

    /// <summary>Runs <paramref name="action"/> on another thread and waits for it (bounded).</summary>
    public static bool RunToCompletion(Action action) => Completes(Run(action));
}
