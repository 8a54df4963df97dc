using System.Collections.Concurrent;
using FluentAssertions;
using Hmm.Tests.Memory;
using Xunit;

namespace Hmm.Tests.DeviceMemory;

public class ManagedDeviceTests
{
    private readonly PhysicalMemory _memory = TestKit.NewMemory(ramMiB: 4);
    private readonly TestDriver _driver = new();

    [Fact]
    public void NewDeviceIsBound()
    {
        var device = new ManagedDevice(_memory, "gpu0");

        device.IsBound.Should().BeTrue();
        device.Name.Should().Be("gpu0");
        device.Memory.Should().BeSameAs(_memory);
        device.Pagemaps().Should().BeEmpty();
    }

    [Fact]
    public void ConstructorRejectsNullArguments()
    {
        Action noMemory = () => _ = new ManagedDevice(null!, "gpu0");
        Action noName = () => _ = new ManagedDevice(_memory, null!);

        noMemory.Should().Throw<ArgumentNullException>();
        noName.Should().Throw<ArgumentNullException>();
    }

    [Fact]
    public async Task UnbindRunsReleaseActionsInReverseRegistrationOrder()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        var order = new ConcurrentQueue<int>();
        for (int i = 1; i <= 4; i++)
        {
            int id = i;
            device.AddAction(() =>
            {
                order.Enqueue(id);
                return Task.CompletedTask;
            });
        }

        order.Should().BeEmpty("nothing runs before unbind");
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);

        order.Should().Equal(4, 3, 2, 1);
        device.IsBound.Should().BeFalse();
    }

    [Fact]
    public async Task EachReleaseActionCompletesBeforeTheNextStarts()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var secondStarted = new ManualResetEventSlim();
        bool firstRan = false;
        device.AddAction(() =>
        {
            firstRan = true;
            return Task.CompletedTask;
        });
        device.AddAction(() =>
        {
            secondStarted.Set();
            return gate.Task;
        });

        Task unbind = device.UnbindAsync();
        secondStarted.Wait(TestKit.Timeout).Should().BeTrue();
        await Task.Delay(20);

        Volatile.Read(ref firstRan).Should().BeFalse("the later action has not completed");
        unbind.IsCompleted.Should().BeFalse();
        gate.SetResult();
        await unbind.WaitAsync(TestKit.Timeout);
        firstRan.Should().BeTrue();
    }

    [Fact]
    public async Task AddActionAfterUnbindStartedThrowsENODEVAndTheActionNeverRuns()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        device.AddAction(() => gate.Task);
        Task unbind = device.UnbindAsync();
        int lateRuns = 0;

        Action add = () => device.AddAction(() =>
        {
            Interlocked.Increment(ref lateRuns);
            return Task.CompletedTask;
        });

        add.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENODEV);
        device.IsBound.Should().BeFalse();
        gate.SetResult();
        await unbind.WaitAsync(TestKit.Timeout);
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);
        lateRuns.Should().Be(0);
    }

    [Fact]
    public async Task AddActionOrResetAfterUnbindStartedRunsTheActionAndThrowsENODEV()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);
        int runs = 0;

        Action add = () => device.AddActionOrReset(() =>
        {
            runs++;
            return Task.CompletedTask;
        });

        add.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENODEV);
        runs.Should().Be(1);
    }

    [Fact]
    public async Task AddActionWithAnInjectedFailureThrowsENOMEMAndNeverRunsTheAction()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        int runs = 0;
        _memory.FaultInjection.FailNext(FaultPoint.DevmAddAction);

        Action add = () => device.AddAction(() =>
        {
            runs++;
            return Task.CompletedTask;
        });

        add.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        runs.Should().Be(0);
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);
        runs.Should().Be(0, "an action that was not attached does not run at unbind");
    }

    [Fact]
    public async Task AddActionOrResetWithAnInjectedFailureRunsTheActionAtOnceAndThrowsENOMEM()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        int runs = 0;
        _memory.FaultInjection.FailNext(FaultPoint.DevmAddAction);

        Action add = () => device.AddActionOrReset(() =>
        {
            runs++;
            return Task.CompletedTask;
        });

        add.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        runs.Should().Be(1);
        device.IsBound.Should().BeTrue();
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);
        runs.Should().Be(1, "the action is not attached, so unbind does not run it again");
    }

    [Fact]
    public void AddActionRejectsANullAction()
    {
        var device = new ManagedDevice(_memory, "gpu0");

        Action add = () => device.AddAction(null!);
        Action addOrReset = () => device.AddActionOrReset(null!);

        add.Should().Throw<ArgumentNullException>();
        addOrReset.Should().Throw<ArgumentNullException>();
    }

    [Fact]
    public async Task UnbindAsyncIsIdempotent()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        int runs = 0;
        device.AddAction(() =>
        {
            Interlocked.Increment(ref runs);
            return Task.CompletedTask;
        });

        Task first = device.UnbindAsync();
        Task second = device.UnbindAsync();
        await Task.WhenAll(first, second).WaitAsync(TestKit.Timeout);
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);
        device.Unbind(TestKit.Timeout);

        runs.Should().Be(1);
    }

    [Fact]
    public async Task UnbindRunsEveryActionAndReportsTheOnesThatFailed()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        int runs = 0;
        device.AddAction(() =>
        {
            runs++;
            return Task.CompletedTask;
        });
        device.AddAction(() => throw new InvalidOperationException("release failed"));

        Func<Task> unbind = () => device.UnbindAsync().WaitAsync(TestKit.Timeout);

        (await unbind.Should().ThrowAsync<AggregateException>())
            .Which.InnerExceptions.Should().ContainSingle().Which.Should().BeOfType<InvalidOperationException>();
        runs.Should().Be(1, "a failed action does not stop the others");
    }

    [Fact]
    public void UnbindWithANegativeTimeoutThrowsAndDoesNotStartUnbinding()
    {
        var device = new ManagedDevice(_memory, "gpu0");

        Action unbind = () => device.Unbind(TimeSpan.FromSeconds(-2));

        unbind.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        device.IsBound.Should().BeTrue();
    }

    [Fact]
    public async Task UnbindWithATimeoutNamesTheReferencedPageAndTheTeardownStillCompletes()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(device, _driver.PrivateOptions(range));
        Pfn held = range.StartPfn + 42;
        pagemap.InitDevicePage(held);
        _memory.UnlockPage(held);
        _memory.GetPage(held);

        Action unbind = () => device.Unbind(TimeSpan.FromMilliseconds(50));

        DeviceTeardownTimeoutException error = unbind.Should().Throw<DeviceTeardownTimeoutException>().Which;
        error.Error.Should().Be(Errno.ETIMEDOUT);
        error.ReferencedPages.Should().Equal(new ReferencedPage(held, 2, pagemap.Id, pagemap.Name));
        error.Message.Should().Contain(held.ToString()).And.Contain("refcount 2").And.Contain("gpu0");
        device.IsBound.Should().BeFalse();
        pagemap.State.Should().Be(DevPagemapState.Dying);
        _memory.IsPresent(held).Should().BeTrue();
        _memory.Page(held).RefCount.Should().Be(2);

        _memory.PutPage(held);
        _memory.PutPage(held);
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);

        pagemap.State.Should().Be(DevPagemapState.Removed);
        _memory.IsPresent(held).Should().BeFalse();
        device.Pagemaps().Should().BeEmpty();
    }

    [Fact]
    public async Task UnbindWithATimeoutReturnsWhenNothingIsReferenced()
    {
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(device, _driver.PrivateOptions(range));
        pagemap.InitDevicePage(range.StartPfn);
        _memory.PutPage(range.StartPfn);

        device.Unbind(TestKit.Timeout);

        pagemap.State.Should().Be(DevPagemapState.Removed);
        await device.UnbindAsync().WaitAsync(TestKit.Timeout);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task TwoPagemapsWithPagesHeldInBothTearDownInEitherReleaseOrder(bool releaseFirstPagemapFirst)
    {
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange rangeA = TestKit.DeviceRange(0);
        PhysicalRange rangeB = TestKit.DeviceRange(2);
        DevPagemap a = Devm.Map(device, _driver.PrivateOptions(rangeA));
        DevPagemap b = Devm.Map(device, _driver.PrivateOptions(rangeB));
        Pfn pageA = rangeA.StartPfn + 1;
        Pfn pageB = rangeB.StartPfn + 2;
        a.InitDevicePage(pageA);
        b.InitDevicePage(pageB);
        device.Pagemaps().Should().Equal(a, b);

        Task unbind = device.UnbindAsync();
        await Task.Delay(20);

        unbind.IsCompleted.Should().BeFalse();
        b.State.Should().Be(DevPagemapState.Dying, "the later registration is released first");
        _memory.IsPresent(pageA).Should().BeTrue();
        _memory.IsPresent(pageB).Should().BeTrue();

        (Pfn first, Pfn second) = releaseFirstPagemapFirst ? (pageA, pageB) : (pageB, pageA);
        _memory.PutPage(first);
        await Task.Delay(20);
        unbind.IsCompleted.Should().BeFalse("a page is still held");
        _memory.IsPresent(second).Should().BeTrue();
        _memory.Page(second).RefCount.Should().Be(1);
        _memory.PutPage(second);

        await unbind.WaitAsync(TestKit.Timeout);
        a.State.Should().Be(DevPagemapState.Removed);
        b.State.Should().Be(DevPagemapState.Removed);
        _memory.IsPresent(pageA).Should().BeFalse();
        _memory.IsPresent(pageB).Should().BeFalse();
        _driver.PageFreeCalls.Select(c => c.Pfn).Should().Equal(first, second);
        Memremap.Map(_memory, _driver.PrivateOptions(rangeA, rangeB)).State.Should().Be(DevPagemapState.Live);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task UnbindWhileOtherThreadsAllocateAndReleaseNeverTearsDownAReferencedPage(int seed)
    {
        const int Workers = 3;
        const int AllocationsBeforeUnbind = 300;
        const int MaxHeldPerWorker = 4;
        var device = new ManagedDevice(_memory, "gpu0");
        PhysicalRange region = Devm.RequestFreeRegion(device, 4 * TestKit.MiB);
        DevPagemap pagemap = Devm.Map(device, _driver.PrivateOptions(region));
        _driver.AddFreePages(pagemap);
        var violations = new ConcurrentQueue<string>();
        var enoughAllocations = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int allocations = 0;
        int held = 0;
        int unbindStarted = 0;

        void Hold(Random random)
        {
            var mine = new List<Pfn>();
            int graceAfterUnbind = random.Next(20, 200);
            while (true)
            {
                bool stopping = Volatile.Read(ref unbindStarted) != 0;
                if (stopping && graceAfterUnbind-- <= 0)
                {
                    break;
                }

                if (mine.Count < MaxHeldPerWorker && random.Next(3) == 0)
                {
                    try
                    {
                        if (_driver.TryAllocate(pagemap, out Pfn pfn))
                        {
                            // The page holds a lifetime reference now, so the teardown cannot finish before the put.
                            Interlocked.Increment(ref held);
                            _memory.UnlockPage(pfn);
                            _memory.PageData(pfn)[0] = (byte)pfn.Value;
                            mine.Add(pfn);
                            if (Interlocked.Increment(ref allocations) == AllocationsBeforeUnbind)
                            {
                                enoughAllocations.TrySetResult();
                            }
                        }
                    }
                    catch (HmmException error) when (error.Error == Errno.ENODEV)
                    {
                        if (Volatile.Read(ref unbindStarted) == 0 && pagemap.State == DevPagemapState.Live)
                        {
                            violations.Enqueue($"ENODEV from a live pagemap: {error.Message}");
                        }
                    }
                }

                foreach (Pfn pfn in mine)
                {
                    Check(pfn);
                }

                if (mine.Count > 0 && random.Next(4) == 0)
                {
                    Pfn pfn = mine[random.Next(mine.Count)];
                    _memory.GetPage(pfn);
                    Check(pfn);
                    _memory.PutPage(pfn);
                }

                if (mine.Count > 0 && random.Next(3) == 0)
                {
                    int index = random.Next(mine.Count);
                    Pfn pfn = mine[index];
                    mine.RemoveAt(index);
                    Check(pfn);
                    Interlocked.Decrement(ref held);
                    _memory.PutPage(pfn);
                }

                if (random.Next(8) == 0)
                {
                    Thread.Yield();
                }
            }

            foreach (Pfn pfn in mine)
            {
                Check(pfn);
                Interlocked.Decrement(ref held);
                _memory.PutPage(pfn);
            }
        }

        void Check(Pfn pfn)
        {
            try
            {
                if (!_memory.IsPresent(pfn))
                {
                    violations.Enqueue($"{pfn} is not present while referenced");
                    return;
                }

                ref readonly PageFrame page = ref _memory.Page(pfn);
                if (page.RefCount < 1 || page.PagemapId != pagemap.Id || !page.IsZoneDevice)
                {
                    violations.Enqueue($"{pfn} changed while referenced: refcount {page.RefCount}, pagemap {page.PagemapId}, flags {page.Flags}");
                }

                if (_memory.PageData(pfn)[0] != (byte)pfn.Value)
                {
                    violations.Enqueue($"{pfn} lost its data while referenced");
                }
            }
            catch (HmmException error)
            {
                violations.Enqueue($"{pfn} vanished while referenced: {error.Message}");
            }
        }

        var seeds = new Random(seed);
        Task[] workers = new Task[Workers];
        for (int w = 0; w < Workers; w++)
        {
            var random = new Random(seeds.Next());
            workers[w] = Task.Factory.StartNew(() => Hold(random), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        int heldWhenRemoved = -1;
        Task unbind = Task.Run(async () =>
        {
            await enoughAllocations.Task.WaitAsync(TestKit.Timeout);
            Task unbinding = device.UnbindAsync();
            // Joins the unbind's own teardown of the pagemap (the internal, idempotent form) to see when it ends.
            Task teardown = pagemap.StartTeardown().ContinueWith(
                _ => Volatile.Write(ref heldWhenRemoved, Volatile.Read(ref held)),
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
            Volatile.Write(ref unbindStarted, 1);
            await Task.WhenAll(unbinding, teardown);
        });

        Func<Task> run = () => Task.WhenAll([.. workers, unbind]).WaitAsync(TestKit.Timeout);

        await run.Should().NotThrowAsync($"seed {seed}: workers and unbind must finish without error or hang");
        violations.Should().BeEmpty($"seed {seed}: no page may be torn down while referenced");
        heldWhenRemoved.Should().Be(0, $"seed {seed}: the pagemap was removed while pages were still held");
        pagemap.State.Should().Be(DevPagemapState.Removed, $"seed {seed}");
        pagemap.ReferenceCount.Should().Be(0, $"seed {seed}");
        allocations.Should().BeGreaterThanOrEqualTo(AllocationsBeforeUnbind, $"seed {seed}");
        _driver.PageFreeCalls.Should().HaveCount(allocations, $"seed {seed}: every allocated page was freed exactly once");
        _driver.FreePageCount.Should().Be((int)pagemap.PageCount, $"seed {seed}");
        _memory.IsPresent(region.StartPfn).Should().BeFalse($"seed {seed}");
        _memory.Resources().Should().ContainSingle($"seed {seed}: the region was released at unbind");
    }
}
