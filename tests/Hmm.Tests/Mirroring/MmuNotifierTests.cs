using FluentAssertions;
using Xunit;
using static Hmm.Tests.Mirroring.MmuNotifierSubscriptionsTests;

namespace Hmm.Tests.Mirroring;

public class MmuNotifierTests
{
    private const ulong Page = 4096;

    [Fact]
    public void ClassicNotifierReceivesStartEndPairsForEveryRange()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var log = new List<string>();
        var ops = new RecordingNotifierOps("a", log);
        MmuNotifier notifier = subscriptions.Register(ops);

        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateRangeStart(Range(8, 9)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(8, 9));
        subscriptions.InvalidateRangeEnd(Range(0, 1));

        log.Should().Equal("a start 0", "a start 8000", "a end 8000", "a end 0");
        notifier.Ops.Should().BeSameAs(ops);
        notifier.Subscriptions.Should().BeSameAs(subscriptions);
        notifier.IsReleased.Should().BeFalse();
    }

    [Fact]
    public void IntervalSubscriptionsAreCalledBeforeClassicNotifiersAndNewestNotifierFirst()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var log = new List<string>();
        subscriptions.Insert(0, Page, new RecordingIntervalOps(log));
        subscriptions.Register(new RecordingNotifierOps("old", log));
        subscriptions.Register(new RecordingNotifierOps("new", log));

        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        subscriptions.Release();

        log.Should().Equal(
            "interval 0 Unmap", "new start 0", "old start 0",
            "new end 0", "old end 0",
            "interval 0 Release", "new release", "old release");
    }

    [Fact]
    public void NonBlockableRefusalEndsTheNotifiersThatStartedAndTheIntervalPart()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var log = new List<string>();
        var intervalOps = new RecordingIntervalOps(log);
        subscriptions.Insert(0, Page, intervalOps);
        var refusing = new RecordingNotifierOps("refusing", log) { StartBehaviour = r => r.Blockable };
        subscriptions.Register(new RecordingNotifierOps("last", log));
        subscriptions.Register(refusing);
        subscriptions.Register(new RecordingNotifierOps("first", log));

        subscriptions.InvalidateRangeStart(Range(0, 1, blockable: false)).Should().BeFalse();

        log.Should().Equal("interval 0 Unmap", "first start 0", "refusing start 0", "first end 0");
        subscriptions.IsInvalidating.Should().BeFalse();
        subscriptions.ActiveInvalidateRanges.Should().Be(0);
        subscriptions.IgnoredBlockableFailures.Should().Be(0);
    }

    [Fact]
    public void BlockableRefusalByAClassicNotifierIsIgnoredAndCounted()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var log = new List<string>();
        subscriptions.Register(new RecordingNotifierOps("bad", log) { StartBehaviour = _ => false });

        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));

        log.Should().Equal("bad start 0", "bad end 0");
        subscriptions.IgnoredBlockableFailures.Should().Be(1);
    }

    [Fact]
    public void UnregisterDeliversReleaseOnceAndStopsCallbacks()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var log = new List<string>();
        var ops = new RecordingNotifierOps("a", log);
        MmuNotifier notifier = subscriptions.Register(ops);

        subscriptions.Unregister(notifier);
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        subscriptions.Release();

        log.Should().Equal("a release");
        notifier.IsReleased.Should().BeTrue();
        subscriptions.NotifierCount.Should().Be(0);
        FluentActions.Invoking(() => subscriptions.Unregister(notifier)).Should().Throw<KernelBugException>();
    }

    [Fact]
    public void UnregisterAfterReleaseDoesNotReleaseAgain()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var log = new List<string>();
        MmuNotifier notifier = subscriptions.Register(new RecordingNotifierOps("a", log));

        subscriptions.Release();
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        subscriptions.Unregister(notifier);

        log.Should().Equal("a release");
    }

    [Fact]
    public void RegisterAfterReleaseFailsAndChangesNothing()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        subscriptions.Release();

        FluentActions.Invoking(() => subscriptions.Register(new RecordingNotifierOps("a", [])))
            .Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        subscriptions.NotifierCount.Should().Be(0);
    }

    [Fact]
    public void RegisterWaitsUntilNoInvalidationIsOpenSoItNeverSeesAnEndWithoutAStart()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var log = new List<string>();
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();

        Task<MmuNotifier> register = Threads.Run(() => subscriptions.Register(new RecordingNotifierOps("a", log)));

        Threads.IsStillBlocked(register).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        Threads.Completes(register).Should().BeTrue();
        log.Should().BeEmpty();
    }

    [Fact]
    public void UnregisterWaitsForARunningCallback()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        using var entered = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        bool finished = false;
        var ops = new RecordingNotifierOps("a", [])
        {
            StartBehaviour = _ =>
            {
                entered.Set();
                proceed.Wait(Threads.Hang);
                Volatile.Write(ref finished, true);
                return true;
            },
        };
        MmuNotifier notifier = subscriptions.Register(ops);
        Task invalidator = Threads.Run(() => subscriptions.InvalidateRangeStart(Range(0, 1)));
        entered.Wait(Threads.Hang).Should().BeTrue();

        Task unregister = Threads.Run(() =>
        {
            subscriptions.Unregister(notifier);
            Volatile.Read(ref finished).Should().BeTrue("Unregister returned while a callback was running");
        });

        Threads.IsStillBlocked(unregister).Should().BeTrue();
        proceed.Set();
        Threads.Completes(unregister).Should().BeTrue();
        Threads.Completes(invalidator).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        ops.Ends.Should().Be(0, "the notifier was gone before the end");
        ops.Releases.Should().Be(1);
    }

    [Fact]
    public void UnregisterFromInsideACallbackIsRefused()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        MmuNotifier? self = null;
        Exception? refused = null;
        var ops = new RecordingNotifierOps("a", []) { ReleaseBehaviour = () => refused = Record.Exception(() => subscriptions.Unregister(self!)) };
        self = subscriptions.Register(ops);

        subscriptions.Release();

        refused.Should().BeOfType<KernelBugException>();
        subscriptions.Unregister(self);
        ops.Releases.Should().Be(1);
    }

    [Fact]
    public void UnregisterOfAForeignNotifierIsRefused()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var other = new MmuNotifierSubscriptions();
        MmuNotifier notifier = subscriptions.Register(new RecordingNotifierOps("a", []));

        FluentActions.Invoking(() => other.Unregister(notifier)).Should().Throw<KernelBugException>();
        subscriptions.NotifierCount.Should().Be(1);
        notifier.IsReleased.Should().BeFalse();
    }
}
