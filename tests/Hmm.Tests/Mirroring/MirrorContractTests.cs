using FluentAssertions;
using Xunit;
using Xunit.Sdk;

namespace Hmm.Tests.Mirroring;

/// <summary>
/// The mirroring contract end to end, with a dmirror-style driver: whatever the CPU side does to a mirrored
/// range, the device table never keeps an entry the CPU no longer agrees with, and a new fault repopulates it.
/// </summary>
public class MirrorContractTests
{
    private const ulong Page = 4096;
    private const ulong Pmd = 2UL << 20;
    private const ulong Base = 0x4000_0000;
    private const int Pages = 16;
    private const int StressRegionPages = 64;

    private readonly PhysicalMemory _memory = new(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });
    private readonly Mm _mm;

    public MirrorContractTests()
    {
        _mm = new Mm(_memory);
    }

    [Fact]
    public void MunmapLeavesNoStaleEntryAndAFaultAfterRemapRepopulates()
    {
        byte[] data = MapWritten(Pages, seed: 1);
        using var client = new DmirrorClient(_mm, Base, Pages * Page);
        client.Fault(Base, End(Pages), write: true).Should().Be(Errno.None);
        client.MappedPages.Should().Be(Pages);
        client.FindStaleEntries().Should().BeEmpty();

        _mm.Munmap(At(4), 4 * Page);

        client.FindStaleEntries().Should().BeEmpty();
        client.MappedPages.Should().Be(Pages - 4, "only the unmapped pages are invalidated");
        client.TryGetEntry(At(4), out _).Should().BeFalse();
        client.Fault(Base, End(Pages), write: false).Should().Be(Errno.EFAULT, "the hole cannot be mirrored");

        _mm.Mmap(At(4), 4 * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
        client.Fault(Base, End(Pages), write: false).Should().Be(Errno.None);

        client.MappedPages.Should().Be(Pages);
        client.FindStaleEntries().Should().BeEmpty();
        client.TryRead(At(5) + 10, out byte remapped).Should().BeTrue();
        remapped.Should().Be(0, "the new mapping is fresh zero memory");
        client.TryRead(At(9) + 10, out byte kept).Should().BeTrue();
        kept.Should().Be(data[(9 * (int)Page) + 10]);
    }

    [Fact]
    public void MprotectReadOnlyRemovesDeviceWriteAccessAndAReadFaultRepopulates()
    {
        byte[] data = MapWritten(Pages, seed: 2);
        using var client = new DmirrorClient(_mm, Base, Pages * Page);
        client.Fault(Base, End(Pages), write: true).Should().Be(Errno.None);

        _mm.Mprotect(Base, Pages * Page, Protection.Read);

        client.MappedPages.Should().Be(0);
        client.Fault(Base, End(Pages), write: true).Should().Be(Errno.EPERM);
        client.MappedPages.Should().Be(0);
        client.Fault(Base, End(Pages), write: false).Should().Be(Errno.None);
        client.MappedPages.Should().Be(Pages);
        client.FindStaleEntries().Should().BeEmpty();
        AllEntries(client).Should().NotContain(e => (e & HmmPfn.Write) != 0);
        DeviceBytesMatch(client, data).Should().BeTrue();
    }

    [Fact]
    public void MadviseDontNeedDropsTheEntriesAndARefaultSeesZeros()
    {
        byte[] data = MapWritten(Pages, seed: 3);
        using var client = new DmirrorClient(_mm, Base, Pages * Page);
        client.Fault(Base, End(Pages), write: true).Should().Be(Errno.None);

        _mm.Madvise(At(2), 4 * Page, Advice.DontNeed);

        client.FindStaleEntries().Should().BeEmpty();
        client.MappedPages.Should().Be(Pages - 4);
        client.Fault(Base, End(Pages), write: false).Should().Be(Errno.None);
        client.MappedPages.Should().Be(Pages);
        client.FindStaleEntries().Should().BeEmpty();
        Array.Clear(data, 2 * (int)Page, 4 * (int)Page);
        DeviceBytesMatch(client, data).Should().BeTrue();
    }

    [Fact]
    public void CopyOnWriteBreakLeavesNoEntryForTheOldPage()
    {
        byte[] data = MapWritten(Pages, seed: 4);
        using var client = new DmirrorClient(_mm, Base, Pages * Page);
        client.Fault(Base, End(Pages), write: true).Should().Be(Errno.None);
        client.TryGetEntry(Base, out ulong original).Should().BeTrue();

        Mm child = _mm.Fork();
        client.FindStaleEntries().Should().BeEmpty("fork write-protects the parent's entries");
        AllEntries(client).Should().NotContain(e => (e & HmmPfn.Write) != 0);
        client.Fault(Base, End(Pages), write: false).Should().Be(Errno.None);
        client.TryGetEntry(Base, out ulong shared).Should().BeTrue();
        HmmPfn.ToPfn(shared).Should().Be(HmmPfn.ToPfn(original), "a read fault shares the page with the child");

        _mm.Write(Base, [0xEE]);

        client.FindStaleEntries().Should().BeEmpty();
        client.TryGetEntry(Base, out _).Should().BeFalse("the COW break replaced the page");
        client.Fault(Base, End(Pages), write: true).Should().Be(Errno.None);
        client.FindStaleEntries().Should().BeEmpty();
        client.TryGetEntry(Base, out ulong copied).Should().BeTrue();
        HmmPfn.ToPfn(copied).Should().NotBe(HmmPfn.ToPfn(original));
        client.TryRead(Base, out byte first).Should().BeTrue();
        first.Should().Be(0xEE);
        var childByte = new byte[1];
        child.Read(Base, childByte);
        childByte[0].Should().Be(data[0], "the child keeps the original page");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MremapMoveInvalidatesTheOldRangeAndTheNewRangeMirrorsTheSamePages(bool dontUnmap)
    {
        byte[] data = MapWritten(8, seed: 7);
        using var client = new DmirrorClient(_mm, Base, 32 * Page);
        client.Fault(Base, End(8), write: true).Should().Be(Errno.None);
        ulong[] before = Enumerable.Range(0, 8).Select(i => client.TryGetEntry(At(i), out ulong e) ? HmmPfn.ToPfn(e).Value : 0).ToArray();

        MremapFlags flags = MremapFlags.MayMove | MremapFlags.Fixed | (dontUnmap ? MremapFlags.DontUnmap : MremapFlags.None);
        _mm.Mremap(Base, 8 * Page, 8 * Page, flags, At(16)).Should().Be(At(16));

        client.MappedPages.Should().Be(0, "every moved entry was invalidated");
        client.Fault(At(16), End(24), write: true).Should().Be(Errno.None);
        client.FindStaleEntries().Should().BeEmpty();
        for (int i = 0; i < 8; i++)
        {
            client.TryGetEntry(At(16 + i), out ulong entry).Should().BeTrue();
            HmmPfn.ToPfn(entry).Value.Should().Be(before[i], "mremap moves the pages themselves");
            client.TryRead(At(16 + i) + 100, out byte moved).Should().BeTrue();
            moved.Should().Be(data[(i * (int)Page) + 100]);
        }

        Errno old = client.Fault(Base, End(8), write: false);
        if (dontUnmap)
        {
            old.Should().Be(Errno.None);
            client.TryRead(Base + 100, out byte fresh).Should().BeTrue();
            fresh.Should().Be(0, "the old range of MREMAP_DONTUNMAP refaults as new zero memory");
        }
        else
        {
            old.Should().Be(Errno.EFAULT);
        }

        client.FindStaleEntries().Should().BeEmpty();
    }

    [Fact]
    public void ExitClearsTheDeviceTableAndLaterFaultsFail()
    {
        MapWritten(Pages, seed: 5);
        using var client = new DmirrorClient(_mm, Base, Pages * Page);
        client.Fault(Base, End(Pages), write: true).Should().Be(Errno.None);

        _mm.Exit();

        client.MappedPages.Should().Be(0);
        client.Fault(Base, End(Pages), write: false).Should().Be(Errno.ESRCH);
        client.Snapshot(Base, End(Pages)).Should().Be(Errno.ESRCH);
        client.MappedPages.Should().Be(0);
    }

    [Fact]
    public void TwoClientsWithDifferentOwnersEachGetTheirInvalidations()
    {
        MapWritten(24, seed: 6);
        using var first = new DmirrorClient(_mm, Base, 16 * Page);
        using var second = new DmirrorClient(_mm, At(8), 16 * Page);
        first.Fault(Base, End(16), write: true).Should().Be(Errno.None);
        second.Fault(At(8), End(24), write: false).Should().Be(Errno.None);
        first.TryGetEntry(At(10), out ulong a).Should().BeTrue();
        second.TryGetEntry(At(10), out ulong b).Should().BeTrue();
        HmmPfn.ToPfn(a).Should().Be(HmmPfn.ToPfn(b));

        _mm.Madvise(At(10), 2 * Page, Advice.DontNeed);

        first.MappedPages.Should().Be(14);
        second.MappedPages.Should().Be(14);

        long secondBefore = second.Invalidations;
        _mm.Munmap(Base, 2 * Page);

        first.MappedPages.Should().Be(12);
        second.Invalidations.Should().Be(secondBefore, "the unmap does not intersect the second interval");

        // A migration announced by the first device: it skips its own event, the second drops its entries.
        var migrate = new MmuNotifierRange(At(12), At(14), MmuNotifierEvent.Migrate, Owner: first.Owner);
        using (_mm.MmapReadLock())
        {
            _mm.InvalidateRangeStart(migrate).Should().BeTrue();
            _mm.InvalidateRangeEnd(migrate);
        }

        first.MappedPages.Should().Be(12);
        second.MappedPages.Should().Be(12);
        second.TryGetEntry(At(12), out _).Should().BeFalse();
        first.FindStaleEntries().Should().BeEmpty();
        second.FindStaleEntries().Should().BeEmpty();
    }

    [Fact]
    public void SeededStressKeepsEveryDeviceTableCoherentWithTheCpu()
    {
        int seed = Environment.GetEnvironmentVariable("HMM_MIRROR_STRESS_SEED") is { } text
            ? int.Parse(text, System.Globalization.CultureInfo.InvariantCulture)
            : 20_240_611;
        using var stress = new MirrorStress(seed);
        stress.Run();
    }

    private static ulong At(int page) => Base + ((ulong)page * Page);

    private static ulong End(int pages) => At(pages);

    private byte[] MapWritten(int pages, int seed)
    {
        _mm.Mmap(Base, (ulong)pages * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
        var data = new byte[pages * (int)Page];
        new Random(seed).NextBytes(data);
        _mm.Write(Base, data);
        return data;
    }

    private static ulong[] AllEntries(DmirrorClient client)
    {
        lock (client.UpdateLock)
        {
            return client.EntriesUnsynchronized().Select(e => e.Value).ToArray();
        }
    }

    private bool DeviceBytesMatch(DmirrorClient client, byte[] expected)
    {
        lock (client.UpdateLock)
        {
            foreach ((ulong address, ulong entry) in client.EntriesUnsynchronized())
            {
                int offset = (int)(address - Base);
                if (!_memory.ReadPageData(HmmPfn.ToPfn(entry)).SequenceEqual(expected.AsSpan(offset, (int)Page)))
                {
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>
    /// Workers, each owning a region of a mirrored range, run random CPU operations on their region and random
    /// mirror operations anywhere; after every batch all of them meet at a barrier whose post-phase action checks
    /// device tables, device bytes and CPU bytes against a reference model.
    /// </summary>
    private sealed class MirrorStress : IDisposable
    {
        private const int Workers = 4;
        private const int RegionPages = StressRegionPages;
        private const int TotalPages = Workers * RegionPages;
        private const int TotalOperations = 10_000;
        private const int OperationsPerWorker = TotalOperations / Workers;
        private const int BatchSize = 100;
        private const int MaxSubRangePages = 8;

        // Children are never exited (exit is slow in Debug builds), so forks are few enough to bound the copies.
        private const int MaxForks = 6;

        // The range straddles a 2 MiB boundary (between regions 1 and 2), so mirror chunks split there.
        private const ulong StressBase = 0x1_0000_0000 + Pmd - (2 * RegionPages * Page);

        private static readonly TimeSpan s_hang = TimeSpan.FromSeconds(60);

        // The race-window dice of the worker running on this thread (from the run's seed), set for the length of
        // Work: AfterWalk runs on the thread that mirrors, so each worker's choices come from its own seeded source.
        [ThreadStatic]
        private static Random? s_windowRandom;

        private readonly int _seed;
        private readonly PhysicalMemory _memory = new(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });
        private readonly Mm _mm;
        private readonly DmirrorClient[] _clients;
        private readonly Region[] _regions = new Region[Workers];
        private readonly CancellationTokenSource _stop = new();
        private readonly byte[] _zeros = new byte[Page];
        private readonly System.Collections.Concurrent.ConcurrentBag<Mm> _children = [];
        private Exception? _failure;
        private int _forks;
        private int _checks;
        private long _mirrorSuccesses;
        private long _mirrorBusy;

        public MirrorStress(int seed)
        {
            _seed = seed;
            _mm = new Mm(_memory, "stress");
            _mm.Mmap(StressBase, TotalPages * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
            _clients = [new DmirrorClient(_mm, StressBase, TotalPages * Page), new DmirrorClient(_mm, StressBase + (32 * Page), (TotalPages - 64) * Page)];
            foreach (DmirrorClient client in _clients)
            {
                client.AfterWalk = WidenRaceWindow;
            }

            for (int i = 0; i < Workers; i++)
            {
                _regions[i] = new Region(i, StressBase + ((ulong)i * RegionPages * Page), new Random(unchecked((seed * 7919) + i)), new Random(unchecked((seed * 104_729) + i)));
            }
        }

        public void Dispose() => _stop.Dispose();

        public void Run()
        {
            using var barrier = new Barrier(Workers, _ => Check());
            var tasks = new Task[Workers];
            for (int i = 0; i < Workers; i++)
            {
                Region region = _regions[i];
                tasks[i] = Threads.Run(() => Work(region, barrier));
            }

            bool finished = Threads.AllComplete(tasks, TimeSpan.FromSeconds(120));
            if (!finished)
            {
                _stop.Cancel();
                throw new XunitException($"seed {_seed}: the stress run hung (last operations: {string.Join("; ", _regions.Select(r => r.LastOperation))}).");
            }

            if (_failure is not null)
            {
                throw new XunitException($"seed {_seed}: {_failure}");
            }

            _checks.Should().Be(OperationsPerWorker / BatchSize, $"seed {_seed}: every batch is checked");
            _mirrorSuccesses.Should().BeGreaterThan(100, $"seed {_seed}: the mirror operations must mostly succeed");
            _clients.Should().OnlyContain(c => c.Invalidations > 0 && c.WriteViolations == 0, $"seed {_seed}");

            _mm.Exit();
            foreach (DmirrorClient client in _clients)
            {
                client.MappedPages.Should().Be(0, $"seed {_seed}: exit releases every mirror");
                client.Dispose();
            }
        }

        // Lets the other workers run between walk and update now and then, so invalidations land in the window
        // the sequence check must catch (a missed check then leaves a stale entry for the next batch check). The
        // dice come from the worker's seeded source, so a failing seed replays the same choices.
        private static void WidenRaceWindow()
        {
            if (s_windowRandom is not { } random)
            {
                return;
            }

            int dice = random.Next(8);
            if (dice == 0)
            {
                Thread.Sleep(0);
            }
            else if (dice == 1)
            {
                Thread.Yield();
            }
        }

        private void Work(Region region, Barrier barrier)
        {
            s_windowRandom = region.WindowRandom;
            try
            {
                for (int operation = 0; operation < OperationsPerWorker; operation++)
                {
                    RunOperation(region);
                    if ((operation + 1) % BatchSize == 0 && !barrier.SignalAndWait(s_hang, _stop.Token))
                    {
                        throw new TimeoutException($"worker {region.Index} waited too long at the barrier after operation {operation}.");
                    }
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                // Another worker failed first.
            }
            catch (BarrierPostPhaseException error)
            {
                Fail(error.InnerException ?? error);
            }
            catch (Exception error)
            {
                Fail(new XunitException($"worker {region.Index}, {region.LastOperation}: {error}"));
            }
            finally
            {
                s_windowRandom = null;
            }
        }

        private void Fail(Exception error)
        {
            Interlocked.CompareExchange(ref _failure, error, null);
            _stop.Cancel();
        }

        private void RunOperation(Region region)
        {
            Random random = region.Random;
            int choice = random.Next(100);
            if (choice < 30)
            {
                CpuWrite(region);
            }
            else if (choice < 40)
            {
                CpuRead(region);
            }
            else if (choice < 47)
            {
                (int first, int count) = SubRange(region);
                region.LastOperation = $"munmap pages {first}+{count}";
                _mm.Munmap(region.Address(first), (ulong)count * Page);
                region.Reset(first, count, PageState.Unmapped);
            }
            else if (choice < 54)
            {
                (int first, int count) = SubRange(region);
                region.LastOperation = $"mmap pages {first}+{count}";
                ulong at = _mm.Mmap(region.Address(first), (ulong)count * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
                Expect(at == region.Address(first), region, $"mmap returned 0x{at:x}");
                region.Reset(first, count, PageState.ReadWrite);
            }
            else if (choice < 62)
            {
                Mprotect(region);
            }
            else if (choice < 68)
            {
                Madvise(region);
            }
            else if (choice == 68 && Interlocked.Increment(ref _forks) <= MaxForks)
            {
                // Every private page becomes copy-on-write: later CPU writes replace pages under the mirrors.
                region.LastOperation = "fork";
                _children.Add(_mm.Fork($"child {_forks}"));
            }
            else
            {
                Mirror(region);
            }
        }

        private void CpuWrite(Region region)
        {
            Random random = region.Random;
            int page = random.Next(RegionPages);
            int offset = random.Next((int)Page);
            var bytes = new byte[random.Next(1, Math.Min(64, (int)Page - offset) + 1)];
            random.NextBytes(bytes);
            region.LastOperation = $"write {bytes.Length} bytes at page {page}+{offset}";
            bool allowed = region.States[page] == PageState.ReadWrite;
            try
            {
                _mm.Write(region.Address(page) + (ulong)offset, bytes);
            }
            catch (SegmentationFaultException) when (!allowed)
            {
                return;
            }

            Expect(allowed, region, "the write succeeded on a page the model says is not writable");
            bytes.CopyTo(region.Bytes(page).AsSpan(offset));
        }

        private void CpuRead(Region region)
        {
            int page = region.Random.Next(RegionPages);
            region.LastOperation = $"read page {page}";
            var bytes = new byte[Page];
            bool allowed = region.States[page] != PageState.Unmapped;
            try
            {
                _mm.Read(region.Address(page), bytes);
            }
            catch (SegmentationFaultException) when (!allowed)
            {
                return;
            }

            Expect(allowed, region, "the read succeeded on an unmapped page");
            Expect(bytes.AsSpan().SequenceEqual(region.Expected(page, _zeros)), region, "the CPU read differs from the model");
        }

        private void Mprotect(Region region)
        {
            (int first, int count) = SubRange(region);
            bool readOnly = region.Random.Next(2) == 0;
            region.LastOperation = $"mprotect pages {first}+{count} {(readOnly ? "ro" : "rw")}";
            bool mapped = region.AllMapped(first, count);
            try
            {
                _mm.Mprotect(region.Address(first), (ulong)count * Page, readOnly ? Protection.Read : Protection.ReadWrite);
            }
            catch (HmmException error) when (!mapped && error.Error == Errno.ENOMEM)
            {
                return;
            }

            Expect(mapped, region, "mprotect over a hole succeeded");
            Array.Fill(region.States, readOnly ? PageState.ReadOnly : PageState.ReadWrite, first, count);
        }

        private void Madvise(Region region)
        {
            (int first, int count) = SubRange(region);
            region.LastOperation = $"madvise dontneed pages {first}+{count}";
            bool mapped = region.AllMapped(first, count);
            try
            {
                _mm.Madvise(region.Address(first), (ulong)count * Page, Advice.DontNeed);
            }
            catch (HmmException error) when (!mapped && error.Error == Errno.ENOMEM)
            {
                return;
            }

            Expect(mapped, region, "madvise over a hole succeeded");
            region.Reset(first, count, state: null);
        }

        private void Mirror(Region region)
        {
            Random random = region.Random;
            DmirrorClient client = _clients[random.Next(_clients.Length)];
            int clientFirst = (int)((client.Notifier.Start - StressBase) / Page);
            int clientPages = (int)((client.Notifier.End - client.Notifier.Start) / Page);
            int kind = random.Next(3);
            int first = clientFirst + random.Next(clientPages);
            int count = Math.Min(random.Next(1, 65), clientFirst + clientPages - first);
            ulong start = StressBase + ((ulong)first * Page);
            ulong end = start + ((ulong)count * Page);
            region.LastOperation = $"client {Array.IndexOf(_clients, client)} {(kind == 0 ? "snapshot" : kind == 1 ? "read fault" : "write fault")} pages {first}+{count}";
            Errno result = kind == 0 ? client.Snapshot(start, end) : client.Fault(start, end, write: kind == 2);

            // Inside its own region the worker knows exactly what the walk must meet.
            int own = first - (region.Index * RegionPages);
            Errno expected = Errno.None;
            if (own >= 0 && own + count <= RegionPages && kind != 0)
            {
                for (int page = own; page < own + count && expected == Errno.None; page++)
                {
                    expected = region.States[page] == PageState.Unmapped ? Errno.EFAULT
                        : kind == 2 && region.States[page] == PageState.ReadOnly ? Errno.EPERM
                        : Errno.None;
                }

                Expect(result == expected || result == Errno.EBUSY, region, $"mirror returned {result}, the model expects {expected}");
            }
            else
            {
                Expect(result is Errno.None or Errno.EFAULT or Errno.EPERM or Errno.EBUSY && (kind != 0 || result is Errno.None or Errno.EBUSY), region, $"mirror returned {result}");
            }

            if (result == Errno.None)
            {
                Interlocked.Increment(ref _mirrorSuccesses);
            }
            else if (result == Errno.EBUSY)
            {
                Interlocked.Increment(ref _mirrorBusy);
            }
        }

        private static (int First, int Count) SubRange(Region region)
        {
            int first = region.Random.Next(RegionPages);
            return (first, Math.Min(region.Random.Next(1, MaxSubRangePages + 1), RegionPages - first));
        }

        private void Expect(bool condition, Region region, string what)
        {
            if (!condition)
            {
                throw new XunitException($"seed {_seed}, worker {region.Index}, {region.LastOperation}: {what}");
            }
        }

        /// <summary>The barrier's post-phase action: every worker is parked, so the whole state is stable.</summary>
        private void Check()
        {
            int check = ++_checks;
            var cpu = new byte[TotalPages][];
            foreach (Region region in _regions)
            {
                for (int page = 0; page < RegionPages; page++)
                {
                    ulong address = region.Address(page);
                    int index = (region.Index * RegionPages) + page;
                    if (region.States[page] == PageState.Unmapped)
                    {
                        Action read = () => _mm.Read(address, new byte[1]);
                        read.Should().Throw<SegmentationFaultException>($"seed {_seed}, check {check}: page {index} is unmapped");
                        continue;
                    }

                    cpu[index] = new byte[Page];
                    _mm.Read(address, cpu[index]);
                    if (!cpu[index].AsSpan().SequenceEqual(region.Expected(page, _zeros)))
                    {
                        throw new XunitException($"seed {_seed}, check {check}: CPU bytes of page {index} differ from the model.");
                    }
                }
            }

            for (int c = 0; c < _clients.Length; c++)
            {
                DmirrorClient client = _clients[c];
                List<string> stale = client.FindStaleEntries();
                if (stale.Count != 0)
                {
                    throw new XunitException($"seed {_seed}, check {check}: client {c} has {stale.Count} stale entries: {string.Join("; ", stale.Take(5))}");
                }

                using MmapLockGuard guard = _mm.MmapReadLock();
                lock (client.UpdateLock)
                {
                    foreach ((ulong address, ulong entry) in client.EntriesUnsynchronized())
                    {
                        int index = (int)((address - StressBase) / Page);
                        int offset = (index * 37) % (int)Page;
                        if (cpu[index] is not { } expected
                            || !_memory.ReadPageData(HmmPfn.ToPfn(entry)).SequenceEqual(expected)
                            || !client.TryRead(address + (ulong)offset, out byte value) || value != expected[offset])
                        {
                            throw new XunitException($"seed {_seed}, check {check}: client {c} sees other bytes than the CPU at page {index}.");
                        }
                    }
                }
            }
        }
    }

    private enum PageState
    {
        ReadWrite,
        ReadOnly,
        Unmapped,
    }

    /// <summary>One worker's pages: their state and bytes (pages absent from <see cref="Data"/> read as zeros).</summary>
    private sealed class Region(int index, ulong start, Random random, Random windowRandom)
    {
        public int Index { get; } = index;

        public Random Random { get; } = random;

        /// <summary>The dice of <c>WidenRaceWindow</c> while this region's worker mirrors.</summary>
        public Random WindowRandom { get; } = windowRandom;

        public PageState[] States { get; } = new PageState[StressRegionPages];

        public Dictionary<ulong, byte[]> Data { get; } = [];

        public string LastOperation { get; set; } = "none";

        public ulong Address(int page) => start + ((ulong)page * Page);

        public byte[] Bytes(int page)
        {
            ulong address = Address(page);
            if (!Data.TryGetValue(address, out byte[]? bytes))
            {
                bytes = new byte[Page];
                Data[address] = bytes;
            }

            return bytes;
        }

        public ReadOnlySpan<byte> Expected(int page, byte[] zeros) =>
            Data.TryGetValue(Address(page), out byte[]? bytes) ? bytes : zeros;

        public bool AllMapped(int first, int count)
        {
            for (int page = first; page < first + count; page++)
            {
                if (States[page] == PageState.Unmapped)
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>The pages read as zeros again; their state changes when given.</summary>
        public void Reset(int first, int count, PageState? state)
        {
            for (int page = first; page < first + count; page++)
            {
                Data.Remove(Address(page));
                if (state is { } value)
                {
                    States[page] = value;
                }
            }
        }
    }
}
