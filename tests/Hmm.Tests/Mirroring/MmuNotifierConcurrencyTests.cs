using System.Diagnostics;
using FluentAssertions;
using Xunit;
using Xunit.Abstractions;

namespace Hmm.Tests.Mirroring;

public class MmuNotifierConcurrencyTests
{
    private const ulong Page = 4096;
    private const int Pages = 64;
    private const int MaxInvalidationsPerThread = 50_000;
    private static readonly TimeSpan s_runTime = TimeSpan.FromMilliseconds(300);

    private readonly ITestOutputHelper _output;

    public MmuNotifierConcurrencyTests(ITestOutputHelper output)
    {
        _output = output;
    }

    /// <summary>
    /// Two threads invalidate random ranges of a fake page table (each page has a generation that is odd while
    /// the page changes), two readers copy the pages of a subscription between ReadBegin and ReadRetry, and a
    /// fifth thread inserts and removes short-lived subscriptions. The contract: a reader that sees
    /// ReadRetry == false under the driver lock copied exactly what the pages hold now, and no page was mid-change;
    /// and no callback ever runs on a subscription after Remove returned.
    /// </summary>
    [Theory]
    [InlineData(17)]
    [InlineData(4242)]
    public void ReadersThatPassReadRetrySawNoOverlappingInvalidation(int seed)
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var world = new World();
        var driver = new DriverOps(world);
        MmuIntervalNotifier[] readerSubs =
        [
            subscriptions.Insert(0, 16 * Page, driver),
            subscriptions.Insert(16 * Page, 16 * Page, driver),
            subscriptions.Insert(32 * Page, 32 * Page, driver),
            subscriptions.Insert(8 * Page, 32 * Page, driver),
        ];
        int invalidatorsRunning = 2;
        using var start = new Barrier(5);
        var stopwatch = Stopwatch.StartNew();

        Task[] threads =
        [
            Threads.Run(() => Invalidate(subscriptions, world, start, seed * 31, ref invalidatorsRunning)),
            Threads.Run(() => Invalidate(subscriptions, world, start, (seed * 31) + 1, ref invalidatorsRunning)),
            Threads.Run(() => Read(readerSubs, world, driver, start, seed * 37, () => Volatile.Read(ref invalidatorsRunning) != 0)),
            Threads.Run(() => Read(readerSubs, world, driver, start, (seed * 37) + 1, () => Volatile.Read(ref invalidatorsRunning) != 0)),
            Threads.Run(() => Churn(subscriptions, world, start, seed * 41, () => Volatile.Read(ref invalidatorsRunning) != 0)),
        ];

        bool finished = Threads.AllComplete(threads, TimeSpan.FromSeconds(60));

        _output.WriteLine($"seed {seed}: {stopwatch.ElapsedMilliseconds} ms, {world.Invalidations} invalidations ({world.Refusals} refused), "
            + $"{world.Reads} reads ({world.Retries} retried), {world.Churns} insert/remove cycles");
        finished.Should().BeTrue($"no thread may hang (seed {seed})");
        foreach (Task thread in threads)
        {
            thread.Exception.Should().BeNull($"seed {seed}");
        }

        world.Violations.Should().BeEmpty($"seed {seed}");
        world.Reads.Should().BeGreaterThan(0, $"seed {seed}");
        subscriptions.IsInvalidating.Should().BeFalse($"seed {seed}");
        subscriptions.ActiveInvalidateRanges.Should().Be(0, $"seed {seed}");
        subscriptions.IntervalTreeCount.Should().Be(readerSubs.Length, $"seed {seed}: every churned subscription is gone");
    }

    /// <summary>
    /// Two threads invalidate while a third registers and unregisters classic notifiers: a notifier never gets
    /// an end without its start, no callback runs after Unregister returned, and release runs exactly once.
    /// </summary>
    [Theory]
    [InlineData(5)]
    [InlineData(99)]
    public void ClassicNotifiersSeeOnlyCompletePairsAndNothingAfterUnregister(int seed)
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var world = new World();
        subscriptions.Insert(0, 8 * Page, new DriverOps(world));
        int invalidatorsRunning = 2;
        using var start = new Barrier(3);

        Task[] threads =
        [
            Threads.Run(() => Invalidate(subscriptions, world, start, seed * 31, ref invalidatorsRunning)),
            Threads.Run(() => Invalidate(subscriptions, world, start, (seed * 31) + 1, ref invalidatorsRunning)),
            Threads.Run(() =>
            {
                var random = new Random(seed);
                start.SignalAndWait(Threads.Hang);
                var live = new List<(MmuNotifier Notifier, CountingNotifierOps Ops)>();
                while (Volatile.Read(ref invalidatorsRunning) != 0 || live.Count != 0)
                {
                    if (live.Count < 3 && Volatile.Read(ref invalidatorsRunning) != 0 && random.Next(2) == 0)
                    {
                        var ops = new CountingNotifierOps(world);
                        live.Add((subscriptions.Register(ops), ops));
                    }
                    else if (live.Count != 0)
                    {
                        int index = random.Next(live.Count);
                        (MmuNotifier notifier, CountingNotifierOps ops) = live[index];
                        live.RemoveAt(index);
                        subscriptions.Unregister(notifier);
                        Volatile.Write(ref ops.Unregistered, true);
                        if (Volatile.Read(ref ops.Releases) != 1)
                        {
                            world.Violation($"release ran {ops.Releases} times");
                        }

                        Interlocked.Increment(ref world.Churns);
                    }

                    Thread.Yield();
                }
            }),
        ];

        bool finished = Threads.AllComplete(threads, TimeSpan.FromSeconds(60));

        _output.WriteLine($"seed {seed}: {world.Invalidations} invalidations, {world.Churns} register/unregister cycles");
        finished.Should().BeTrue($"no thread may hang (seed {seed})");
        foreach (Task thread in threads)
        {
            thread.Exception.Should().BeNull($"seed {seed}");
        }

        world.Violations.Should().BeEmpty($"seed {seed}");
        subscriptions.NotifierCount.Should().Be(0, $"seed {seed}");
        subscriptions.ActiveInvalidateRanges.Should().Be(0, $"seed {seed}");
    }

    private static void Invalidate(MmuNotifierSubscriptions subscriptions, World world, Barrier start, int seed, ref int running)
    {
        var random = new Random(seed);
        try
        {
            start.SignalAndWait(Threads.Hang);
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < MaxInvalidationsPerThread && clock.Elapsed < s_runTime; i++)
            {
                int first = random.Next(Pages);
                int end = Math.Min(Pages, first + 1 + random.Next(12));
                bool blockable = random.Next(4) != 0;
                var range = new MmuNotifierRange((ulong)first * Page, (ulong)end * Page, MmuNotifierEvent.Clear, blockable);
                if (!subscriptions.InvalidateRangeStart(range))
                {
                    if (blockable)
                    {
                        world.Violation($"a blockable start returned false for pages [{first}, {end})");
                    }

                    Interlocked.Increment(ref world.Refusals);
                    continue;
                }

                // Change the pages: they are unstable (odd) in between, as PTEs are between clear and set.
                for (int p = first; p < end; p++)
                {
                    Interlocked.Increment(ref world.Generation[p]);
                }

                if (random.Next(4) == 0)
                {
                    Thread.Yield();
                }

                for (int p = first; p < end; p++)
                {
                    Interlocked.Increment(ref world.Generation[p]);
                }

                subscriptions.InvalidateRangeEnd(range);
                Interlocked.Increment(ref world.Invalidations);

                // Leave gaps with no invalidation at all, or parallel invalidations could keep every epoch open.
                if (random.Next(8) == 0)
                {
                    Thread.Sleep(0);
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref running);
        }
    }

    private static void Read(MmuIntervalNotifier[] subs, World world, DriverOps driver, Barrier start, int seed, Func<bool> keepGoing)
    {
        var random = new Random(seed);
        start.SignalAndWait(Threads.Hang);
        long[] copy = new long[Pages];
        int extra = 50;
        while (keepGoing() || extra-- > 0)
        {
            MmuIntervalNotifier sub = subs[random.Next(subs.Length)];
            int first = (int)(sub.Start / Page);
            int end = (int)(sub.End / Page);
            ulong seq = sub.ReadBegin();
            for (int p = first; p < end; p++)
            {
                copy[p] = Volatile.Read(ref world.Generation[p]);
            }

            if (random.Next(4) == 0)
            {
                Thread.Yield();
            }

            lock (driver.DriverLock)
            {
                if (sub.ReadRetry(seq))
                {
                    Interlocked.Increment(ref world.Retries);
                    continue;
                }

                // The "device mapping" is programmed here: what was copied must be current and stable.
                for (int p = first; p < end; p++)
                {
                    long now = Volatile.Read(ref world.Generation[p]);
                    if ((copy[p] & 1) != 0 || now != copy[p])
                    {
                        world.Violation($"reader of {sub} passed ReadRetry with page {p} copied at generation {copy[p]}, now {now}");
                    }
                }
            }

            Interlocked.Increment(ref world.Reads);
        }
    }

    private static void Churn(MmuNotifierSubscriptions subscriptions, World world, Barrier start, int seed, Func<bool> keepGoing)
    {
        var random = new Random(seed);
        start.SignalAndWait(Threads.Hang);
        while (keepGoing())
        {
            int first = random.Next(Pages);
            var ops = new ChurnOps(world);
            MmuIntervalNotifier sub = subscriptions.Insert((ulong)first * Page, (ulong)(1 + random.Next(8)) * Page, ops);
            if (random.Next(2) == 0)
            {
                ulong seq = sub.ReadBegin();
                lock (ops.DriverLock)
                {
                    _ = sub.ReadRetry(seq);
                }
            }

            subscriptions.Remove(sub);
            Volatile.Write(ref ops.Removed, true);
            Interlocked.Increment(ref world.Churns);
        }
    }

    private sealed class World
    {
        public readonly long[] Generation = new long[Pages];
        public long Invalidations;
        public long Refusals;
        public long Reads;
        public long Retries;
        public long Churns;
        private readonly List<string> _violations = [];

        public List<string> Violations
        {
            get
            {
                lock (_violations)
                {
                    return [.. _violations];
                }
            }
        }

        public void Violation(string what)
        {
            lock (_violations)
            {
                if (_violations.Count < 20)
                {
                    _violations.Add(what);
                }
            }
        }
    }

    // The mirror driver's callback: one driver lock; a non-blockable range only tries it.
    private sealed class DriverOps(World world) : IMmuIntervalNotifierOps
    {
        public object DriverLock { get; } = new();

        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            if (range.Blockable)
            {
                Monitor.Enter(DriverLock);
            }
            else if (!Monitor.TryEnter(DriverLock))
            {
                return false;
            }

            try
            {
                if ((currentSequence & 1) == 0)
                {
                    world.Violation($"callback got an even sequence {currentSequence}");
                }

                subscription.SetSequence(currentSequence);
            }
            finally
            {
                Monitor.Exit(DriverLock);
            }

            return true;
        }
    }

    private sealed class CountingNotifierOps(World world) : IMmuNotifierOps
    {
        public bool Unregistered;
        public int Releases;
        private long _open;

        public bool InvalidateRangeStart(in MmuNotifierRange range)
        {
            CheckRegistered();
            Interlocked.Increment(ref _open);
            return true;
        }

        public void InvalidateRangeEnd(in MmuNotifierRange range)
        {
            CheckRegistered();
            if (Interlocked.Decrement(ref _open) < 0)
            {
                world.Violation("an end without its start");
            }
        }

        public void Release()
        {
            CheckRegistered();
            Interlocked.Increment(ref Releases);
        }

        private void CheckRegistered()
        {
            if (Volatile.Read(ref Unregistered))
            {
                world.Violation("a callback after Unregister returned");
            }
        }
    }

    private sealed class ChurnOps(World world) : IMmuIntervalNotifierOps
    {
        public bool Removed;

        public object DriverLock { get; } = new();

        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            if (Volatile.Read(ref Removed))
            {
                world.Violation($"callback on {subscription} after Remove returned");
            }

            lock (DriverLock)
            {
                subscription.SetSequence(currentSequence);
            }

            return true;
        }
    }
}
