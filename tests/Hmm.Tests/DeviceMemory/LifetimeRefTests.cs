using FluentAssertions;
using Hmm.Tests.Memory;
using Xunit;

namespace Hmm.Tests.DeviceMemory;

public class LifetimeRefTests
{
    [Fact]
    public void NewRefIsLiveWithItsInitialReference()
    {
        var lifetime = new LifetimeRef();

        lifetime.Count.Should().Be(1);
        lifetime.IsDying.Should().BeFalse();
        lifetime.Idle.IsCompleted.Should().BeFalse();
    }

    [Fact]
    public void TryGetLiveAndPutCountReferencesWhileLive()
    {
        var lifetime = new LifetimeRef();

        lifetime.TryGetLive().Should().BeTrue();
        lifetime.TryGetLive(3).Should().BeTrue();
        lifetime.Count.Should().Be(5);
        lifetime.Put(3);
        lifetime.Put();

        lifetime.Count.Should().Be(1);
        lifetime.Idle.IsCompleted.Should().BeFalse();
    }

    [Fact]
    public void TryGetLiveFailsAfterKillAndChangesNothing()
    {
        var lifetime = new LifetimeRef();
        lifetime.TryGetLive();
        lifetime.Kill();

        lifetime.TryGetLive().Should().BeFalse();
        lifetime.TryGetLive(10).Should().BeFalse();

        lifetime.Count.Should().Be(1);
        lifetime.IsDying.Should().BeTrue();
    }

    [Fact]
    public void TryGetSucceedsWhileTheCountIsAboveZeroEvenWhenDying()
    {
        var lifetime = new LifetimeRef();
        lifetime.TryGetLive();
        lifetime.Kill();

        lifetime.TryGet().Should().BeTrue();

        lifetime.Count.Should().Be(2);
        lifetime.Put();
        lifetime.Put();
        lifetime.TryGet().Should().BeFalse("the count reached zero");
        lifetime.Count.Should().Be(0);
    }

    [Fact]
    public void KillDropsTheInitialReference()
    {
        var lifetime = new LifetimeRef();
        lifetime.TryGetLive(2);

        lifetime.Kill().Should().BeTrue();

        lifetime.Count.Should().Be(2);
        lifetime.IsDying.Should().BeTrue();
    }

    [Fact]
    public void KillWithNoOtherReferenceCompletesIdleAtOnce()
    {
        var lifetime = new LifetimeRef();

        lifetime.Kill();

        lifetime.Count.Should().Be(0);
        lifetime.Idle.IsCompleted.Should().BeTrue();
    }

    [Fact]
    public void IdleCompletesExactlyWhenTheLastReferenceIsPutAfterKill()
    {
        var lifetime = new LifetimeRef();
        lifetime.TryGetLive(2);
        lifetime.Kill();

        lifetime.Idle.IsCompleted.Should().BeFalse();
        lifetime.Put();
        lifetime.Idle.IsCompleted.Should().BeFalse("one reference is still out");
        lifetime.Put();

        lifetime.Idle.IsCompletedSuccessfully.Should().BeTrue();
        lifetime.Count.Should().Be(0);
    }

    [Fact]
    public void KillIsIdempotent()
    {
        var lifetime = new LifetimeRef();
        lifetime.TryGetLive();

        lifetime.Kill().Should().BeTrue();
        lifetime.Kill().Should().BeFalse();
        lifetime.Kill().Should().BeFalse();

        lifetime.Count.Should().Be(1, "only the first kill drops the initial reference");
        lifetime.Idle.IsCompleted.Should().BeFalse();
    }

    [Fact]
    public void PutBelowZeroThrowsKernelBugWithoutChangingTheCount()
    {
        var lifetime = new LifetimeRef();
        lifetime.TryGetLive();
        lifetime.Kill();

        Action putTwo = () => lifetime.Put(2);

        putTwo.Should().Throw<KernelBugException>();
        lifetime.Count.Should().Be(1);
        lifetime.Idle.IsCompleted.Should().BeFalse();

        lifetime.Put();
        Action putAgain = () => lifetime.Put();

        putAgain.Should().Throw<KernelBugException>();
        lifetime.Count.Should().Be(0);
        lifetime.Idle.IsCompletedSuccessfully.Should().BeTrue();
    }

    [Fact]
    public void PutThatWouldDropTheInitialReferenceOfALiveRefThrowsKernelBug()
    {
        var lifetime = new LifetimeRef();
        lifetime.TryGetLive();
        lifetime.Put();

        Action extraPut = () => lifetime.Put();

        extraPut.Should().Throw<KernelBugException>("only Kill drops the initial reference");
        lifetime.Count.Should().Be(1);
        lifetime.IsDying.Should().BeFalse();
        lifetime.Idle.IsCompleted.Should().BeFalse("a live ref is never idle");
        lifetime.TryGetLive().Should().BeTrue();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task NoGetSucceedsOnceIdleHasCompleted(int seed)
    {
        const int Getters = 3;
        const int GetsBeforeKill = 500;
        const int AttemptsAfterIdle = 200;
        var lifetime = new LifetimeRef();
        int gets = 0;
        int lateGets = 0;
        var random = new Random(seed);

        Task[] getters = new Task[Getters];
        for (int t = 0; t < Getters; t++)
        {
            var threadRandom = new Random(random.Next());
            getters[t] = Task.Factory.StartNew(
                () =>
                {
                    int afterIdle = 0;
                    while (afterIdle < AttemptsAfterIdle)
                    {
                        bool idleBefore = lifetime.Idle.IsCompleted;
                        bool live = threadRandom.Next(4) != 0;
                        if (live ? lifetime.TryGetLive() : lifetime.TryGet())
                        {
                            // While this reference is held the count cannot reach zero, so Idle must not be complete.
                            if (idleBefore || lifetime.Idle.IsCompleted)
                            {
                                Interlocked.Increment(ref lateGets);
                            }

                            Interlocked.Increment(ref gets);
                            Thread.SpinWait(threadRandom.Next(1, 32));
                            lifetime.Put();
                        }

                        if (idleBefore)
                        {
                            afterIdle++;
                        }
                    }
                },
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
        }

        Task killer = Task.Factory.StartNew(
            () =>
            {
                var spinner = default(SpinWait);
                while (Volatile.Read(ref gets) < GetsBeforeKill && !Task.WhenAll(getters).IsCompleted)
                {
                    spinner.SpinOnce();
                }

                lifetime.Kill();
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        Func<Task> run = () => Task.WhenAll([.. getters, killer]).WaitAsync(TestKit.Timeout);

        await run.Should().NotThrowAsync($"seed {seed}: the getters must finish once the ref is idle");
        lateGets.Should().Be(0, $"seed {seed}: a get succeeded after Idle completed");
        lifetime.Count.Should().Be(0, $"seed {seed}");
        lifetime.Idle.IsCompletedSuccessfully.Should().BeTrue($"seed {seed}");
        lifetime.TryGetLive().Should().BeFalse($"seed {seed}");
        lifetime.TryGet().Should().BeFalse($"seed {seed}");
    }

    [Theory]
    [InlineData(1L << 62)]
    [InlineData(long.MaxValue)]
    [InlineData((1L << 62) - 1)]
    public void TryGetLiveThatWouldOverflowIntoTheDeadBitOrWrapIsEoverflowAndChangesNothing(long count)
    {
        var lifetime = new LifetimeRef();
        lifetime.TryGetLive(2);

        Action get = () => lifetime.TryGetLive(count);

        get.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EOVERFLOW);
        lifetime.Count.Should().Be(3);
        lifetime.IsDying.Should().BeFalse("the dead bit was not touched");
        lifetime.TryGetLive().Should().BeTrue("the ref is still live");
        lifetime.Count.Should().Be(4);
    }

    [Fact]
    public void TryGetLiveUpToTheLargestCountSucceedsAndOneMoreIsEoverflow()
    {
        var lifetime = new LifetimeRef();

        lifetime.TryGetLive(LifetimeRef.MaxCount - 1).Should().BeTrue();
        lifetime.Count.Should().Be(LifetimeRef.MaxCount);
        lifetime.IsDying.Should().BeFalse();
        lifetime.Invoking(l => l.TryGetLive()).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EOVERFLOW);
        lifetime.Invoking(l => l.TryGet()).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EOVERFLOW);
        lifetime.Count.Should().Be(LifetimeRef.MaxCount);

        lifetime.Put(LifetimeRef.MaxCount - 1);
        lifetime.Count.Should().Be(1);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-1L)]
    [InlineData(long.MinValue)]
    public void CountsBelowOneAreRefusedAndChangeNothing(long count)
    {
        var lifetime = new LifetimeRef();
        lifetime.TryGetLive();

        lifetime.Invoking(l => l.TryGetLive(count)).Should().Throw<ArgumentOutOfRangeException>();
        lifetime.Invoking(l => l.Put(count)).Should().Throw<ArgumentOutOfRangeException>();
        lifetime.Count.Should().Be(2);
    }

    [Fact]
    public void PutTakesTheFastPathAboveOneAndTheSlowPathCompletesIdle()
    {
        var lifetime = new LifetimeRef();
        lifetime.TryGetLive(3);
        lifetime.Kill();

        lifetime.Put();
        lifetime.Put();
        lifetime.Idle.IsCompleted.Should().BeFalse();
        lifetime.Put();

        lifetime.Count.Should().Be(0);
        lifetime.Idle.IsCompletedSuccessfully.Should().BeTrue();
    }
}
