using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Memory;

public partial class PhysicalMemoryTests
{
    [Fact]
    public void TryLockPageTakesAFreeLockAndRefusesAHeldOne()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();

        memory.TryLockPage(pfn).Should().BeTrue();
        memory.TryLockPage(pfn).Should().BeFalse("the page lock is not reentrant");
        memory.IsPageLocked(pfn).Should().BeTrue();

        memory.UnlockPage(pfn);

        memory.IsPageLocked(pfn).Should().BeFalse();
        memory.Page(pfn).Flags.Should().Be(PageFlags.None);
        memory.TryLockPage(pfn).Should().BeTrue();
    }

    [Fact]
    public void LockingLeavesTheOtherFlagsAlone()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        Interlocked.Or(ref memory.Frame(pfn)._flags, (ulong)(PageFlags.Dirty | PageFlags.Uptodate));

        memory.LockPage(pfn);
        memory.Page(pfn).Flags.Should().Be(PageFlags.Dirty | PageFlags.Uptodate | PageFlags.Locked);
        memory.UnlockPage(pfn);

        memory.Page(pfn).Flags.Should().Be(PageFlags.Dirty | PageFlags.Uptodate);
    }

    [Fact]
    public void UnlockPageOnAnUnlockedPageThrowsKernelBugAndLeavesFlagsUnchanged()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        Interlocked.Or(ref memory.Frame(pfn)._flags, (ulong)PageFlags.Dirty);
        MemorySnapshot before = MemorySnapshot.Take(memory, pfn);

        Action unlock = () => memory.UnlockPage(pfn);

        unlock.Should().Throw<KernelBugException>();
        memory.Page(pfn).Flags.Should().Be(PageFlags.Dirty);
        MemorySnapshot.Take(memory, pfn).Should().Be(before);
    }

    [Fact]
    public void UnlockPageOnAnUnlockedPageKeepsAWaitersBitItDidNotOwn()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        Interlocked.Or(ref memory.Frame(pfn)._flags, (ulong)PageFlags.Waiters);

        Action unlock = () => memory.UnlockPage(pfn);

        unlock.Should().Throw<KernelBugException>();
        memory.Page(pfn).Flags.Should().Be(PageFlags.Waiters);
    }

    [Fact]
    public void PageLockCallsOnAnAbsentFrameThrowEFAULT()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn absent = Pfn.FromPhysicalAddress(TestKit.DeviceBase);

        Action tryLock = () => memory.TryLockPage(absent);
        Action lockPage = () => memory.LockPage(absent);
        Action unlock = () => memory.UnlockPage(absent);

        tryLock.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
        lockPage.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
        unlock.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EFAULT);
    }

    [Fact]
    public async Task LockPageSleepsUntilAnotherThreadUnlocks()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        memory.LockPage(pfn);
        using var acquired = new ManualResetEventSlim();

        Task locker = Task.Factory.StartNew(
            () =>
            {
                memory.LockPage(pfn);
                acquired.Set();
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        // Give the locker time to reach the sleeping path; it must not get the lock while it is held.
        acquired.Wait(TimeSpan.FromMilliseconds(100)).Should().BeFalse("the lock is still held");
        locker.IsCompleted.Should().BeFalse();

        memory.UnlockPage(pfn);

        await locker.WaitAsync(TestKit.Timeout);
        acquired.IsSet.Should().BeTrue();
        memory.IsPageLocked(pfn).Should().BeTrue("the woken thread now holds the lock");
        memory.UnlockPage(pfn);
        memory.Page(pfn).Flags.Should().Be(PageFlags.None, "the last unlock clears the waiters bit too");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task ContendingThreadsNeverHoldThePageLockTogether(int seed)
    {
        const int Threads = 4;
        const int Rounds = 400;
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn pfn = memory.AllocatePage();
        int holders = 0;
        int violations = 0;
        long unsafeCounter = 0;

        Task[] workers = new Task[Threads];
        for (int t = 0; t < Threads; t++)
        {
            var random = new Random((seed * 1000) + t);
            workers[t] = Task.Factory.StartNew(
                () =>
                {
                    for (int round = 0; round < Rounds; round++)
                    {
                        if (random.Next(4) == 0)
                        {
                            while (!memory.TryLockPage(pfn))
                            {
                                Thread.Yield();
                            }
                        }
                        else
                        {
                            memory.LockPage(pfn);
                        }

                        if (Interlocked.Increment(ref holders) != 1)
                        {
                            Interlocked.Increment(ref violations);
                        }

                        // A plain read-modify-write: loses updates unless the lock excludes the other threads.
                        long value = unsafeCounter;
                        Thread.SpinWait(random.Next(1, 64));
                        if (random.Next(16) == 0)
                        {
                            Thread.Yield();
                        }

                        unsafeCounter = value + 1;
                        Interlocked.Decrement(ref holders);
                        memory.UnlockPage(pfn);
                    }
                },
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
        }

        Func<Task> run = () => Task.WhenAll(workers).WaitAsync(TestKit.Timeout);

        await run.Should().NotThrowAsync($"seed {seed}: the lock must not hang or fault");
        violations.Should().Be(0, $"seed {seed}: two threads held the page lock at once");
        unsafeCounter.Should().Be(Threads * Rounds, $"seed {seed}: an update made under the lock was lost");
        memory.Page(pfn).Flags.Should().Be(PageFlags.None, $"seed {seed}: the page ends unlocked with no waiters");
    }
}
