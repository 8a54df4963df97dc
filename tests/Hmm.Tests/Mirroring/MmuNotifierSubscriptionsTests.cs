using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Mirroring;

public class MmuNotifierSubscriptionsTests
{
    private const ulong Page = 4096;

    [Fact]
    public void SequenceStartsEvenAtTwo()
    {
        var subscriptions = new MmuNotifierSubscriptions();

        subscriptions.InvalidateSequence.Should().Be(2);
        subscriptions.IsInvalidating.Should().BeFalse();
        subscriptions.ActiveInvalidateRanges.Should().Be(0);
    }

    [Fact]
    public void InsertWhenIdleGivesAnOddSequenceJustBelowTheGlobalOne()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        MmuIntervalNotifier sub = subscriptions.Insert(16 * Page, 4 * Page, new RecordingIntervalOps());

        ulong seq = sub.ReadBegin();

        seq.Should().Be(1);
        sub.ReadRetry(seq).Should().BeFalse();
        sub.CheckRetry(seq).Should().BeFalse();
        sub.Start.Should().Be(16 * Page);
        sub.End.Should().Be(20 * Page);
        sub.Subscriptions.Should().BeSameAs(subscriptions);
        subscriptions.IntervalTreeCount.Should().Be(1);
    }

    [Fact]
    public void InvalidationMakesOverlappingSubscriptionsRetryAndLeavesOthersAlone()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier hit = subscriptions.Insert(0, 4 * Page, ops);
        MmuIntervalNotifier touching = subscriptions.Insert(4 * Page, 4 * Page, ops);
        MmuIntervalNotifier far = subscriptions.Insert(100 * Page, 4 * Page, ops);
        ulong hitSeq = hit.ReadBegin();
        ulong touchingSeq = touching.ReadBegin();
        ulong farSeq = far.ReadBegin();
        var range = Range(2, 5);

        subscriptions.InvalidateRangeStart(range).Should().BeTrue();

        subscriptions.IsInvalidating.Should().BeTrue();
        subscriptions.InvalidateSequence.Should().Be(3);
        hit.ReadRetry(hitSeq).Should().BeTrue();
        touching.ReadRetry(touchingSeq).Should().BeTrue();
        far.ReadRetry(farSeq).Should().BeFalse();
        ops.CallsFor(far).Should().Be(0);
        ops.Calls().Should().OnlyContain(c => c.Sequence == 3 && c.Range == range);

        subscriptions.InvalidateRangeEnd(range);

        subscriptions.InvalidateSequence.Should().Be(4);
        subscriptions.ActiveInvalidateRanges.Should().Be(0);
        hit.ReadRetry(hitSeq).Should().BeTrue("an invalidation hit it after ReadBegin");
        far.ReadRetry(farSeq).Should().BeFalse();
    }

    [Fact]
    public void RangeEndIsExclusive()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier sub = subscriptions.Insert(4 * Page, Page, ops);

        subscriptions.InvalidateRangeStart(Range(0, 4)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 4));

        ops.CallsFor(sub).Should().Be(0);
        subscriptions.InvalidateSequence.Should().Be(2, "an invalidation that hits nothing leaves the sequence even");
    }

    [Fact]
    public void InvalidationThatHitsNothingKeepsTheSequenceEvenButCountsAsActive()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        subscriptions.Insert(100 * Page, Page, new RecordingIntervalOps());

        subscriptions.InvalidateRangeStart(Range(0, 10)).Should().BeTrue();

        subscriptions.InvalidateSequence.Should().Be(2);
        subscriptions.ActiveInvalidateRanges.Should().Be(1);
        subscriptions.InvalidateRangeEnd(Range(0, 10));
        subscriptions.ActiveInvalidateRanges.Should().Be(0);
    }

    [Fact]
    public void ReadBeginBlocksDuringAnOverlappingInvalidationAndReturnsAfterTheEnd()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        MmuIntervalNotifier sub = subscriptions.Insert(0, 8 * Page, new RecordingIntervalOps());
        subscriptions.InvalidateRangeStart(Range(1, 2)).Should().BeTrue();

        Task<ulong> reader = Threads.Run(sub.ReadBegin);

        Threads.IsStillBlocked(reader).Should().BeTrue("the subscription is being invalidated");
        subscriptions.InvalidateRangeEnd(Range(1, 2));
        Threads.Completes(reader).Should().BeTrue("the end wakes sleeping readers");
        Threads.ResultOf(reader).Should().Be(3, "the sequence the invalidation stored");
        sub.ReadRetry(Threads.ResultOf(reader)).Should().BeFalse();
    }

    [Fact]
    public void ReadBeginDoesNotBlockWhileOnlyOtherSubscriptionsAreInvalidated()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier hit = subscriptions.Insert(0, Page, ops);
        MmuIntervalNotifier other = subscriptions.Insert(10 * Page, Page, ops);
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();

        Task<ulong> reader = Threads.Run(other.ReadBegin);

        Threads.Completes(reader).Should().BeTrue();
        other.ReadRetry(Threads.ResultOf(reader)).Should().BeFalse();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        hit.ReadBegin().Should().Be(3);
    }

    [Fact]
    public void InsertDuringAnInvalidationIsDeferredUntilTheLastEnd()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        subscriptions.Insert(0, 4 * Page, ops);
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();

        MmuIntervalNotifier late = subscriptions.Insert(0, 4 * Page, ops);

        subscriptions.IntervalTreeCount.Should().Be(1, "the tree is frozen while it is being invalidated");
        Task<ulong> reader = Threads.Run(late.ReadBegin);
        Threads.IsStillBlocked(reader).Should().BeTrue("a subscription inserted mid-invalidation counts as invalidated");

        // A nested invalidation over the same range does not see the deferred subscription.
        subscriptions.InvalidateRangeStart(Range(0, 4)).Should().BeTrue();
        ops.CallsFor(late).Should().Be(0);
        subscriptions.InvalidateRangeEnd(Range(0, 4));
        Threads.IsStillBlocked(reader).Should().BeTrue("the first invalidation is still active");
        subscriptions.InvalidateRangeEnd(Range(0, 1));

        Threads.Completes(reader).Should().BeTrue();
        subscriptions.IntervalTreeCount.Should().Be(2);
        late.ReadRetry(Threads.ResultOf(reader)).Should().BeFalse();
        subscriptions.InvalidateRangeStart(Range(3, 4)).Should().BeTrue();
        ops.CallsFor(late).Should().Be(1, "the next invalidation visits it");
        late.ReadRetry(Threads.ResultOf(reader)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(3, 4));
    }

    [Fact]
    public void InsertWhileActiveRangesHitNothingMakesTheSequenceOddAndReadBeginWaits()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateSequence.Should().Be(2);

        MmuIntervalNotifier sub = subscriptions.Insert(50 * Page, Page, new RecordingIntervalOps());

        subscriptions.InvalidateSequence.Should().Be(3, "the active range is unknown, so it may cover the new interval");
        subscriptions.IntervalTreeCount.Should().Be(1, "no walk runs, so the tree may change at once");
        Task<ulong> reader = Threads.Run(sub.ReadBegin);
        Threads.IsStillBlocked(reader).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        Threads.Completes(reader).Should().BeTrue();
        Threads.ResultOf(reader).Should().Be(3);
        subscriptions.InvalidateSequence.Should().Be(4);
    }

    [Fact]
    public void RemoveDuringAnInvalidationWaitsUntilItEndsAndNoCallbackRunsAfterwards()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier sub = subscriptions.Insert(0, 4 * Page, ops);
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();

        Task remover = Threads.Run(() => subscriptions.Remove(sub));

        Threads.IsStillBlocked(remover).Should().BeTrue();
        sub.IsRemoved.Should().BeFalse();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        Threads.Completes(remover).Should().BeTrue();
        sub.IsRemoved.Should().BeTrue();
        subscriptions.IntervalTreeCount.Should().Be(0);
        int calls = ops.CallsFor(sub);
        subscriptions.InvalidateRangeStart(Range(0, 4)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 4));
        ops.CallsFor(sub).Should().Be(calls);
    }

    [Fact]
    public void RemoveWaitsForACallbackThatIsStillRunning()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier sub = subscriptions.Insert(0, 4 * Page, ops);
        using var entered = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        bool callbackFinished = false;
        ops.Behaviour = (s, _, seq) =>
        {
            entered.Set();
            proceed.Wait(Threads.Hang);
            lock (ops.DriverLock)
            {
                s.SetSequence(seq);
            }

            Volatile.Write(ref callbackFinished, true);
            return true;
        };
        Task invalidator = Threads.Run(() =>
        {
            subscriptions.InvalidateRangeStart(Range(0, 1));
            subscriptions.InvalidateRangeEnd(Range(0, 1));
        });
        entered.Wait(Threads.Hang).Should().BeTrue();

        Task remover = Threads.Run(() =>
        {
            subscriptions.Remove(sub);
            Volatile.Read(ref callbackFinished).Should().BeTrue("Remove returned while a callback was running");
        });

        Threads.IsStillBlocked(remover).Should().BeTrue();
        proceed.Set();
        Threads.Completes(remover).Should().BeTrue();
        Threads.Completes(invalidator).Should().BeTrue();
        remover.Exception.Should().BeNull();
    }

    [Fact]
    public void RemovingADeferredInsertReturnsAtOnceAndItNeverJoinsTheTree()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        subscriptions.Insert(0, Page, ops);
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        MmuIntervalNotifier late = subscriptions.Insert(0, Page, ops);

        subscriptions.Remove(late);

        late.IsRemoved.Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        subscriptions.IntervalTreeCount.Should().Be(1);
    }

    [Fact]
    public void RemoveFromInsideACallbackIsRefused()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier sub = subscriptions.Insert(0, Page, ops);
        Exception? refused = null;
        ops.Behaviour = (s, _, seq) =>
        {
            refused = Record.Exception(() => subscriptions.Remove(s));
            lock (ops.DriverLock)
            {
                s.SetSequence(seq);
            }

            return true;
        };

        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));

        refused.Should().BeOfType<KernelBugException>().Which.Message.Should().Contain("Remove");
        sub.IsRemoved.Should().BeFalse();
        subscriptions.IntervalTreeCount.Should().Be(1);
        subscriptions.Remove(sub);
        sub.IsRemoved.Should().BeTrue();
    }

    [Fact]
    public void ReadBeginFromInsideACallbackIsRefused()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        subscriptions.Insert(0, Page, ops);
        Exception? refused = null;
        ops.Behaviour = (s, _, _) =>
        {
            refused = Record.Exception(() => s.ReadBegin());
            return true;
        };

        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));

        refused.Should().BeOfType<KernelBugException>();
    }

    [Fact]
    public void RemovingTwiceOrFromAnotherAddressSpaceIsRefused()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var other = new MmuNotifierSubscriptions();
        MmuIntervalNotifier sub = subscriptions.Insert(0, Page, new RecordingIntervalOps());

        FluentActions.Invoking(() => other.Remove(sub)).Should().Throw<KernelBugException>();
        subscriptions.IntervalTreeCount.Should().Be(1);
        subscriptions.Remove(sub);
        FluentActions.Invoking(() => subscriptions.Remove(sub)).Should().Throw<KernelBugException>();
        FluentActions.Invoking(() => sub.ReadBegin()).Should().Throw<KernelBugException>();
    }

    [Fact]
    public void NonBlockableRefusalStopsTheWalkReturnsFalseAndLeavesTheTreeIdle()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier first = subscriptions.Insert(0, Page, ops);
        MmuIntervalNotifier second = subscriptions.Insert(Page, Page, ops);
        ops.Behaviour = (s, r, seq) => !ReferenceEquals(s, first) && Set(ops, s, seq);
        var range = Range(0, 2, blockable: false);

        subscriptions.InvalidateRangeStart(range).Should().BeFalse();

        ops.CallsFor(first).Should().Be(1);
        ops.CallsFor(second).Should().Be(0, "the walk stops at the first refusal");
        subscriptions.IsInvalidating.Should().BeFalse();
        subscriptions.InvalidateSequence.Should().Be(4, "the epoch was opened and is closed again");
        subscriptions.ActiveInvalidateRanges.Should().Be(0);
        FluentActions.Invoking(() => subscriptions.InvalidateRangeEnd(range)).Should().Throw<KernelBugException>("the invalidation is already ended");
        subscriptions.InvalidateSequence.Should().Be(4);
        subscriptions.IgnoredBlockableFailures.Should().Be(0);
    }

    [Fact]
    public void BlockableRefusalIsIgnoredAndCounted()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier first = subscriptions.Insert(0, Page, ops);
        MmuIntervalNotifier second = subscriptions.Insert(Page, Page, ops);
        ops.Behaviour = (s, r, seq) => !ReferenceEquals(s, first) && Set(ops, s, seq);

        subscriptions.InvalidateRangeStart(Range(0, 2)).Should().BeTrue();

        ops.CallsFor(second).Should().Be(1);
        subscriptions.IgnoredBlockableFailures.Should().Be(1);
        subscriptions.IsInvalidating.Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 2));
        subscriptions.IsInvalidating.Should().BeFalse();
    }

    [Fact]
    public void NestedAndParallelInvalidationsKeepTheSequenceOddUntilTheLastEnds()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        subscriptions.Insert(0, 16 * Page, new RecordingIntervalOps());

        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateRangeStart(Range(2, 3)).Should().BeTrue();
        Threads.RunToCompletion(() => subscriptions.InvalidateRangeStart(Range(4, 5))).Should().BeTrue();
        subscriptions.ActiveInvalidateRanges.Should().Be(3);
        subscriptions.InvalidateSequence.Should().Be(3);

        subscriptions.InvalidateRangeEnd(Range(2, 3));
        subscriptions.InvalidateSequence.Should().Be(3);
        Threads.RunToCompletion(() => subscriptions.InvalidateRangeEnd(Range(4, 5))).Should().BeTrue();
        subscriptions.InvalidateSequence.Should().Be(3);
        subscriptions.InvalidateRangeEnd(Range(0, 1));

        subscriptions.InvalidateSequence.Should().Be(4);
        subscriptions.ActiveInvalidateRanges.Should().Be(0);
    }

    [Fact]
    public void ReleaseCallsEverySubscriptionOnceWithTheReleaseEventAndLaterInsertsFail()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier[] subs =
        [
            subscriptions.Insert(0, Page, ops),
            subscriptions.Insert(0, 64 * Page, ops),
            subscriptions.Insert((1UL << 48) - Page, Page, ops),
        ];

        subscriptions.Release();
        subscriptions.Release();

        foreach (MmuIntervalNotifier sub in subs)
        {
            ops.CallsFor(sub).Should().Be(1);
        }

        ops.Calls().Should().OnlyContain(c => c.Range == new MmuNotifierRange(0, ulong.MaxValue, MmuNotifierEvent.Release, true, null));
        subscriptions.IsReleased.Should().BeTrue();
        subscriptions.IsInvalidating.Should().BeFalse();
        ulong seq = subscriptions.InvalidateSequence;
        FluentActions.Invoking(() => subscriptions.Insert(0, Page, ops)).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        subscriptions.IntervalTreeCount.Should().Be(3);
        subscriptions.InvalidateSequence.Should().Be(seq);

        // The exit's own unmapping still reaches the subscriptions, and drivers still remove them.
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        ops.CallsFor(subs[0]).Should().Be(2);
        foreach (MmuIntervalNotifier sub in subs)
        {
            subscriptions.Remove(sub);
        }

        subscriptions.IntervalTreeCount.Should().Be(0);
    }

    [Fact]
    public void ReleaseWaitsForTheCurrentInvalidationSoThatDeferredInsertsAreReleasedToo()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        subscriptions.Insert(0, Page, ops);
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        MmuIntervalNotifier late = subscriptions.Insert(Page, Page, ops);

        Task release = Threads.Run(subscriptions.Release);

        Threads.IsStillBlocked(release).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        Threads.Completes(release).Should().BeTrue();
        ops.Calls().Where(c => ReferenceEquals(c.Subscription, late)).Should().ContainSingle()
            .Which.Range.Event.Should().Be(MmuNotifierEvent.Release);
    }

    [Fact]
    public void ReleaseFromInsideACallbackIsRefused()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        subscriptions.Insert(0, Page, ops);
        Exception? refused = null;
        ops.Behaviour = (_, _, _) =>
        {
            refused = Record.Exception(subscriptions.Release);
            return true;
        };

        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(Range(0, 1));

        refused.Should().BeOfType<KernelBugException>();
        subscriptions.IsReleased.Should().BeFalse();
    }

    [Theory]
    [InlineData(0UL, 0UL, Errno.EOVERFLOW)]
    [InlineData(Page, 0UL, Errno.EOVERFLOW)]
    [InlineData(ulong.MaxValue - Page + 1, 2 * Page, Errno.EOVERFLOW)]
    [InlineData(2UL, ulong.MaxValue, Errno.EOVERFLOW)]
    [InlineData(ulong.MaxValue, 2UL, Errno.EOVERFLOW)]
    public void InsertErrorsChangeNothing(ulong start, ulong length, Errno error)
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        subscriptions.Insert(0, Page, ops);
        subscriptions.InvalidateRangeStart(Range(0, 1)).Should().BeTrue();
        ulong seq = subscriptions.InvalidateSequence;

        FluentActions.Invoking(() => subscriptions.Insert(start, length, ops))
            .Should().Throw<HmmException>().Which.Error.Should().Be(error);

        subscriptions.IntervalTreeCount.Should().Be(1);
        subscriptions.InvalidateSequence.Should().Be(seq);
        subscriptions.InvalidateRangeEnd(Range(0, 1));
        subscriptions.IntervalTreeCount.Should().Be(1, "no deferred insert was queued either");
    }

    [Theory]
    [InlineData(0UL, ulong.MaxValue & ~(Page - 1), ulong.MaxValue - Page)]
    [InlineData(0UL, ulong.MaxValue, ulong.MaxValue - 1)]
    [InlineData(1UL, ulong.MaxValue, ulong.MaxValue)]
    [InlineData(ulong.MaxValue, 1UL, ulong.MaxValue)]
    [InlineData(Page + 1, Page, (2 * Page) + 1 - 1)]
    [InlineData(Page, Page + 7, (2 * Page) + 7 - 1)]
    [InlineData(1UL << 48, Page, (1UL << 48) + Page - 1)]
    [InlineData((1UL << 48) - Page, 2 * Page, (1UL << 48) + Page - 1)]
    public void InsertAcceptsEveryIntervalTheKernelAccepts(ulong start, ulong length, ulong last)
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();

        MmuIntervalNotifier sub = subscriptions.Insert(start, length, ops);

        sub.Start.Should().Be(start);
        sub.Last.Should().Be(last);
        sub.End.Should().Be(last == ulong.MaxValue ? ulong.MaxValue : last + 1, "End saturates when the interval includes the top address");
        subscriptions.IntervalTreeCount.Should().Be(1);

        // An exclusive range cannot end past the top, so the invalidation covers [last - 1, last) or [start, start + 1).
        ulong hitAt = Math.Min(start, ulong.MaxValue - 1);
        var range = new MmuNotifierRange(hitAt, hitAt + 1, MmuNotifierEvent.Clear);
        ulong sequence = sub.ReadBegin();
        subscriptions.InvalidateRangeStart(range).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(range);
        bool hits = hitAt >= start;
        sub.ReadRetry(sequence).Should().Be(hits);
        ops.CallsFor(sub).Should().Be(hits ? 1 : 0);
    }

    [Fact]
    public void WholeSpaceSubscriptionsSeeInvalidationsAtTheTopAndTheReleaseAsTheKernelDoes()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier testHmm = subscriptions.Insert(0, ulong.MaxValue & ~(Page - 1), ops);
        MmuIntervalNotifier belowTop = subscriptions.Insert(0, ulong.MaxValue, ops);
        MmuIntervalNotifier throughTop = subscriptions.Insert(Page, ulong.MaxValue - Page + 1, ops);
        MmuIntervalNotifier topByte = subscriptions.Insert(ulong.MaxValue, 1, ops);
        var topPage = new MmuNotifierRange(ulong.MaxValue - Page + 1, ulong.MaxValue, MmuNotifierEvent.Clear);

        subscriptions.InvalidateRangeStart(topPage).Should().BeTrue();
        subscriptions.InvalidateRangeEnd(topPage);

        ops.Calls().Select(c => c.Subscription).Should().BeEquivalentTo([belowTop, throughTop], "the range's last address is ulong.MaxValue - 1");

        subscriptions.Release();

        ops.CallsFor(testHmm).Should().Be(1);
        ops.CallsFor(belowTop).Should().Be(2);
        ops.CallsFor(throughTop).Should().Be(2);
        ops.CallsFor(topByte).Should().Be(0, "the release range [0, ULONG_MAX) leaves out the top address, in the kernel too");
        subscriptions.IsInvalidating.Should().BeFalse();
    }

    [Fact]
    public void InsertWithNullOpsIsRefused()
    {
        var subscriptions = new MmuNotifierSubscriptions();

        FluentActions.Invoking(() => subscriptions.Insert(0, Page, null!)).Should().Throw<ArgumentNullException>();
        subscriptions.IntervalTreeCount.Should().Be(0);
    }

    [Fact]
    public void EmptyRangesAndEndsWithoutStartsAreBugs()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        subscriptions.Insert(0, Page, new RecordingIntervalOps());

        FluentActions.Invoking(() => subscriptions.InvalidateRangeStart(new MmuNotifierRange(Page, Page, MmuNotifierEvent.Unmap)))
            .Should().Throw<KernelBugException>();
        FluentActions.Invoking(() => subscriptions.InvalidateRangeEnd(Range(0, 1))).Should().Throw<KernelBugException>();
        subscriptions.ActiveInvalidateRanges.Should().Be(0);
        subscriptions.InvalidateSequence.Should().Be(2);
    }

    [Fact]
    public void SetSequenceRefusesEvenValues()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        MmuIntervalNotifier sub = subscriptions.Insert(0, Page, new RecordingIntervalOps());
        ulong seq = sub.ReadBegin();

        FluentActions.Invoking(() => sub.SetSequence(4)).Should().Throw<KernelBugException>();
        sub.ReadRetry(seq).Should().BeFalse();
    }

    [Fact]
    public void ACallbackThatThrowsEndsTheInvalidation()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier sub = subscriptions.Insert(0, Page, ops);
        ops.Behaviour = (_, _, _) => throw new InvalidOperationException("driver bug");

        FluentActions.Invoking(() => subscriptions.InvalidateRangeStart(Range(0, 1))).Should().Throw<InvalidOperationException>();

        subscriptions.IsInvalidating.Should().BeFalse();
        subscriptions.ActiveInvalidateRanges.Should().Be(0);
        ops.Behaviour = null;
        subscriptions.Remove(sub);
    }

    [Fact]
    public void StartAndEndOverAPopulatedTreeDoNotAllocate()
    {
        var subscriptions = new MmuNotifierSubscriptions();
        var ops = new NonAllocatingOps();
        for (ulong i = 0; i < 1024; i++)
        {
            subscriptions.Insert(i * 4 * Page, 2 * Page, ops);
        }

        subscriptions.Register(new NonAllocatingNotifierOps());
        var range = Range(100, 140);
        for (int i = 0; i < 100; i++)
        {
            subscriptions.InvalidateRangeStart(range);
            subscriptions.InvalidateRangeEnd(range);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            subscriptions.InvalidateRangeStart(range);
            subscriptions.InvalidateRangeEnd(range);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        allocated.Should().Be(0);
        ops.Calls.Should().Be(1100 * 10);
    }

    internal static MmuNotifierRange Range(ulong startPage, ulong endPage, bool blockable = true) =>
        new(startPage * Page, endPage * Page, MmuNotifierEvent.Unmap, blockable);

    private static bool Set(RecordingIntervalOps ops, MmuIntervalNotifier sub, ulong seq)
    {
        lock (ops.DriverLock)
        {
            sub.SetSequence(seq);
        }

        return true;
    }

    private sealed class NonAllocatingOps : IMmuIntervalNotifierOps
    {
        private readonly object _driverLock = new();

        public int Calls { get; private set; }

        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            lock (_driverLock)
            {
                Calls++;
                subscription.SetSequence(currentSequence);
            }

            return true;
        }
    }

    private sealed class NonAllocatingNotifierOps : IMmuNotifierOps
    {
        public bool InvalidateRangeStart(in MmuNotifierRange range) => true;

        public void InvalidateRangeEnd(in MmuNotifierRange range)
        {
        }

        public void Release()
        {
        }
    }
}
