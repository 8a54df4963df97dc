using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

public class MmLifetimeTests
{
    private const ulong Base = 0x4000_0000;
    private static readonly TimeSpan s_patience = TimeSpan.FromSeconds(30);

    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _mm;

    public MmLifetimeTests()
    {
        _mm = new Mm(_memory, "proc");
    }

    [Fact]
    public void NewAddressSpaceIsAliveAndEmpty()
    {
        _mm.IsAlive.Should().BeTrue();
        _mm.Name.Should().Be("proc");
        _mm.Memory.Should().BeSameAs(_memory);
        _mm.Areas().Should().BeEmpty();
        _mm.VmaCount.Should().Be(0);
        _mm.IsMmapLockHeld.Should().BeFalse();
    }

    [Fact]
    public void TryGetKeepsTheAddressSpaceAliveUntilTheLastPut()
    {
        ulong free = _memory.FreeRamPages;
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);

        _mm.TryGet().Should().BeTrue();
        _mm.Exit();

        _mm.IsAlive.Should().BeTrue("a driver still holds a user reference");
        _mm.ShouldHold(a, 2, seed: 1);
        _mm.MapAnonymous(1);
        _memory.FreeRamPages.Should().Be(free - 2);

        _mm.Put();

        _mm.IsAlive.Should().BeFalse();
        _memory.FreeRamPages.Should().Be(free);
        _mm.TryGet().Should().BeFalse();
    }

    [Fact]
    public void PutWithoutAReferenceIsAKernelBugAndChangesNothing()
    {
        _mm.Exit();

        _mm.Invoking(m => m.Put()).Should().Throw<KernelBugException>();
        _mm.Invoking(m => m.Exit()).Should().Throw<KernelBugException>();

        _mm.IsAlive.Should().BeFalse();
        _mm.TryGet().Should().BeFalse("the failed put left the count at zero");
    }

    [Fact]
    public void ExitReleasesEveryPageAndPageTable()
    {
        SimFile file = PatternFile(_memory, 4, seed: 3);
        ulong free = _memory.FreeRamPages;
        ulong a = _mm.MapAnonymousAt(Base, 8);
        Fill(_mm, a, 8, seed: 1);
        _mm.Mprotect(a + Page, Page, Protection.Read);
        ulong z = _mm.MapAnonymous(3, Protection.Read);
        _mm.ShouldReadZeros(z, 3);
        ulong p = _mm.Mmap(0, 4 * Page, Protection.ReadWrite, MapFlags.Private, file);
        Fill(_mm, p, 2, seed: 4);
        _mm.ShouldHoldFrom(p + (2 * Page), 2, 2 * Page, seed: 3);
        ulong s = _mm.Mmap(0x7000_0000_0000, 4 * Page, Protection.ReadWrite, MapFlags.Shared, file);
        _mm.Write(s, [1]);
        _mm.PageTable.PteTableCount.Should().BeGreaterThan(1);

        _mm.Exit();

        _mm.IsAlive.Should().BeFalse();
        _memory.FreeRamPages.Should().Be(free);
        _mm.PageTable.PteTableCount.Should().Be(0);
        _mm.ReadPte(a).IsNone.Should().BeTrue();
        file.CachedPages.Should().Be(4);
        for (ulong i = 0; i < 4; i++)
        {
            _mm.ReadPte(s + (i * Page)).IsNone.Should().BeTrue();
        }
    }

    [Fact]
    public void ExitReleasesSharedAnonymousMemory()
    {
        ulong free = _memory.FreeRamPages;
        ulong s = _mm.Mmap(0, 4 * Page, Protection.ReadWrite, SharedAnonymous);
        Fill(_mm, s, 4, seed: 1);

        _mm.Exit();

        _memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void UnmapOfTheLastSharedAnonymousMappingFreesItsPages()
    {
        ulong free = _memory.FreeRamPages;
        ulong s = _mm.Mmap(0, 4 * Page, Protection.ReadWrite, SharedAnonymous);
        Fill(_mm, s, 4, seed: 1);
        Mm child = _mm.Fork();

        _mm.Munmap(s, 4 * Page);
        child.ShouldHold(s, 4, seed: 1);
        child.Exit();

        _memory.FreeRamPages.Should().Be(free);
    }

    public static TheoryData<string> EntryPoints() =>
    [
        "Mmap", "MmapFixed", "Munmap", "Mprotect", "Mremap", "Madvise", "Fork", "Areas", "VmaCount", "Read", "Write",
        "MmapReadLock", "MmapWriteLock", "GetUserPages", "PinUserPages",
    ];

    [Theory]
    [MemberData(nameof(EntryPoints))]
    public void EveryEntryPointFailsWithEsrchAfterExitAndChangesNothing(string entryPoint)
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        _mm.Exit();
        ulong free = _memory.FreeRamPages;
        var pages = new Pfn[1];
        Action call = entryPoint switch
        {
            "Mmap" => () => _mm.Mmap(0, Page, Protection.Read, PrivateAnonymous),
            "MmapFixed" => () => _mm.Mmap(Base, Page, Protection.Read, PrivateAnonymous | MapFlags.Fixed),
            "Munmap" => () => _mm.Munmap(a, Page),
            "Mprotect" => () => _mm.Mprotect(a, Page, Protection.Read),
            "Mremap" => () => _mm.Mremap(a, Page, 2 * Page, MremapFlags.MayMove),
            "Madvise" => () => _mm.Madvise(a, Page, Advice.DontNeed),
            "Fork" => () => _mm.Fork(),
            "Areas" => () => _mm.Areas(),
            "VmaCount" => () => _ = _mm.VmaCount,
            "Read" => () => _mm.Read(a, new byte[1]),
            "Write" => () => _mm.Write(a, [1]),
            "MmapReadLock" => () =>
            {
                using MmapLockGuard guard = _mm.MmapReadLock();
            },
            "MmapWriteLock" => () =>
            {
                using MmapLockGuard guard = _mm.MmapWriteLock();
            },
            "GetUserPages" => () => _mm.GetUserPages(a, GupFlags.None, pages),
            "PinUserPages" => () => _mm.PinUserPages(a, GupFlags.Write, pages),
            _ => throw new ArgumentOutOfRangeException(nameof(entryPoint)),
        };

        call.ShouldFailWith(Errno.ESRCH).Should().NotBeOfType<SegmentationFaultException>();

        _memory.FreeRamPages.Should().Be(free);
        _mm.IsMmapLockHeld.Should().BeFalse("a failed lock attempt leaves the lock free");
        _mm.PageTable.PteTableCount.Should().Be(0);
        pages[0].Should().Be(default(Pfn));
    }

    [Fact]
    public void ReadPteAfterExitSeesNothing()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        Fill(_mm, a, 1, seed: 1);

        _mm.Exit();

        _mm.ReadPte(a).IsNone.Should().BeTrue();
        _mm.Invoking(m => m.FindVma(a)).Should().Throw<KernelBugException>("no one can hold the lock of an exited address space");
    }

    [Fact]
    public void FindVmaWithoutTheMmapLockIsAKernelBug()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);

        _mm.Invoking(m => m.FindVma(a)).Should().Throw<KernelBugException>();
    }

    [Fact]
    public void FindVmaUnderTheMmapLockFindsTheContainingArea()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        ulong b = _mm.MapAnonymousAt(Base + (4 * Page), 1);

        using (MmapLockGuard guard = _mm.MmapReadLock())
        {
            _mm.IsMmapLockHeld.Should().BeTrue();
            _mm.FindVma(a)!.Start.Should().Be(a);
            _mm.FindVma(a + (2 * Page) - 1)!.Start.Should().Be(a);
            _mm.FindVma(a + (2 * Page)).Should().BeNull();
            _mm.FindVma(b - 1).Should().BeNull();
            _mm.FindVma(b)!.End.Should().Be(b + Page);
            _mm.FindVma(0).Should().BeNull();
            _mm.FindVma(ulong.MaxValue).Should().BeNull();
        }

        _mm.IsMmapLockHeld.Should().BeFalse();
        using (MmapLockGuard guard = _mm.MmapWriteLock())
        {
            _mm.IsMmapLockHeld.Should().BeTrue();
            _mm.FindVma(b + 10)!.Start.Should().Be(b);
        }

        _mm.IsMmapLockHeld.Should().BeFalse();
    }

    [Fact]
    public void TheMmapLockIsHeldOnlyByTheThreadThatTookIt()
    {
        using MmapLockGuard guard = _mm.MmapReadLock();

        var elsewhere = new TestThread<bool>(() => _mm.IsMmapLockHeld);

        elsewhere.Join(s_patience).Should().BeTrue();
        elsewhere.Result.Should().BeFalse();
        _mm.IsMmapLockHeld.Should().BeTrue();
    }

    [Fact]
    public void ReadLocksAreShared()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        using MmapLockGuard guard = _mm.MmapReadLock();

        var other = new TestThread<bool>(() =>
        {
            using MmapLockGuard inner = _mm.MmapReadLock();
            return _mm.FindVma(a) is not null;
        });

        other.Join(s_patience).Should().BeTrue("a second reader does not wait for the first");
        other.Result.Should().BeTrue();
    }

    [Fact]
    public void TheWriteLockKeepsOtherThreadsOut()
    {
        ulong a = _mm.MapAnonymousAt(Base, 1);
        TestThread<int> other;
        using (MmapLockGuard guard = _mm.MmapWriteLock())
        {
            other = new TestThread<int>(() => _mm.VmaCount);
            other.Join(TimeSpan.FromMilliseconds(100)).Should().BeFalse("the writer holds the lock");
            _mm.FindVma(a).Should().NotBeNull();
        }

        other.Join(s_patience).Should().BeTrue();
        other.Result.Should().Be(1);
    }

    [Fact]
    public void ExitWaitsForAThreadThatHoldsTheMmapLock()
    {
        ulong free = _memory.FreeRamPages;
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        using var locked = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var reader = new TestThread<bool>(() =>
        {
            using MmapLockGuard guard = _mm.MmapReadLock();
            locked.Set();
            release.Wait(s_patience);
            return _mm.ReadPte(a).IsPresent;
        });
        locked.Wait(s_patience).Should().BeTrue();

        var exit = new TestThread<bool>(() =>
        {
            _mm.Exit();
            return true;
        });
        exit.Join(TimeSpan.FromMilliseconds(100)).Should().BeFalse("exit_mmap needs the mmap lock for writing");
        _mm.IsAlive.Should().BeFalse("the last user reference is already gone");
        _memory.FreeRamPages.Should().Be(free - 2);

        release.Set();
        reader.Join(s_patience).Should().BeTrue();
        exit.Join(s_patience).Should().BeTrue();
        reader.Result.Should().BeTrue("teardown waited for the lock holder");
        exit.Result.Should().BeTrue();
        _memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void ExitNotifiesReleaseOnceAfterTheLastPut()
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);
        _mm.TryGet().Should().BeTrue();

        _mm.Exit();
        chain.Releases.Should().Be(0);
        _mm.Put();

        chain.Releases.Should().Be(1);
        chain.Calls.Should().Equal(
            [new NotifierCall(NotifierCallKind.Release, 0, 0, MmuNotifierEvent.Release), .. NotifierCall.Pair(0, ulong.MaxValue, MmuNotifierEvent.Unmap)],
            "exit_mmap releases the notifiers, then unmaps every area inside one UNMAP of the whole space");
        chain.ShouldBeBalanced();
    }

    [Fact]
    public void NotifiersAreInstalledOnce()
    {
        var first = new RecordingNotifierChain();
        var second = new RecordingNotifierChain();

        _mm.GetOrSetNotifiers(first).Should().BeSameAs(first);
        _mm.GetOrSetNotifiers(second).Should().BeSameAs(first);
        _mm.Notifiers.Should().BeSameAs(first);
    }

    [Fact]
    public void ConcurrentGetsAndPutsTearDownExactlyOnce()
    {
        const int Seed = 1234;
        var random = new Random(Seed);
        ulong free = _memory.FreeRamPages;
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);
        int[] spins = [.. Enumerable.Range(0, 3).Select(_ => random.Next(1, 50))];
        var failures = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        byte[][] expected = [.. Enumerable.Range(0, 4).Select(i => Pattern(a + ((ulong)i * Page), (int)Page, seed: 1))];

        TestThread<bool>[] users = [.. spins.Select(spin => new TestThread<bool>(() =>
        {
            try
            {
                var buffer = new byte[Page];
                for (int i = 0; i < 10_000 && _mm.TryGet(); i++)
                {
                    try
                    {
                        _mm.Read(a + ((ulong)(i % 4) * Page), buffer);
                        if (!buffer.AsSpan().SequenceEqual(expected[i % 4]))
                        {
                            throw new InvalidOperationException($"Page {i % 4} changed under a user reference.");
                        }
                    }
                    finally
                    {
                        _mm.Put();
                    }

                    Thread.SpinWait(spin);
                }
            }
            catch (Exception error)
            {
                failures.Enqueue(error);
            }

            return true;
        }))];
        Thread.SpinWait(random.Next(1000, 100_000));
        _mm.Exit();

        users.Should().OnlyContain(user => user.Join(s_patience), $"seed {Seed}: the users finish");
        failures.Should().BeEmpty($"seed {Seed}: a user holding a reference always sees the memory");
        chain.Releases.Should().Be(1, $"seed {Seed}");
        _mm.IsAlive.Should().BeFalse();
        _memory.FreeRamPages.Should().Be(free, $"seed {Seed}");
    }
}
