using FluentAssertions;
using Hmm.Tests.AddressSpace;
using Xunit;

namespace Hmm.Tests.Migration;

public class MigrationConcurrencyTests
{
    private const ulong Page = MigrationTestKit.Page;
    private static readonly TimeSpan s_hang = TimeSpan.FromSeconds(60);

    private readonly PhysicalMemory _memory = MigrationTestKit.NewMemory();
    private readonly ulong _freeRamAtStart;
    private readonly MigrationTestDriver _driver;

    public MigrationConcurrencyTests()
    {
        _freeRamAtStart = _memory.FreeRamPages;
        _driver = new MigrationTestDriver(_memory);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void SeveralThreadsFaultingOnTheSameDevicePagesAllProgressAndReadTheRightBytes(int seed)
    {
        const int threads = 6;
        const int pages = 8;
        const int rounds = 4;
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(pages);
        byte[] model = TestKit.Pattern(a, pages * (int)Page, seed);
        mm.Write(a, model);
        for (int round = 0; round < rounds; round++)
        {
            _driver.MigrateToDevice(mm, a, a + (pages * Page)).Should().Be(pages, $"seed {seed} round {round}: everything is in RAM before");
            bool writes = round % 2 == 1;
            using var start = new Barrier(threads);
            var workers = new TestThread<bool>[threads];
            for (int t = 0; t < threads; t++)
            {
                int thread = t;
                var random = new Random(HashCode.Combine(seed, round, thread));
                workers[t] = new TestThread<bool>(() =>
                {
                    start.SignalAndWait();
                    foreach (int page in Enumerable.Range(0, pages).OrderBy(_ => random.Next()))
                    {
                        ulong address = a + ((ulong)page * Page);
                        if (writes)
                        {
                            // Each thread owns one byte of every page, so the final bytes are known whatever the interleaving.
                            mm.Write(address + (ulong)thread, [(byte)(0x80 + round + thread)]);
                        }
                        else
                        {
                            var bytes = new byte[Page];
                            mm.Read(address, bytes);
                            bytes.Should().Equal(model.AsSpan(page * (int)Page, (int)Page).ToArray(), $"seed {seed} round {round} thread {thread} page {page}");
                        }
                    }

                    return true;
                });
            }

            foreach (TestThread<bool> worker in workers)
            {
                worker.Join(s_hang).Should().BeTrue($"seed {seed} round {round}: every faulting thread makes progress");
                worker.Result.Should().BeTrue();
            }

            if (writes)
            {
                for (int page = 0; page < pages; page++)
                {
                    for (int thread = 0; thread < threads; thread++)
                    {
                        model[(page * (int)Page) + thread] = (byte)(0x80 + round + thread);
                    }
                }
            }

            TestKit.ReadBytes(mm, a, pages * Page).Should().Equal(model, $"seed {seed} round {round}: the bytes equal the model");
            mm.ShouldBeAccounted(a, pages);
            _driver.FreePageCount.Should().Be(_driver.InitialFreePages, $"seed {seed} round {round}: every device page came back");
        }

        _driver.MigrateToRamCalls.Should().BeGreaterThanOrEqualTo(rounds * pages);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Fact]
    public void ACpuWriteRacingAMigrationWaitsOnTheMigrationEntryAndIsNotLost()
    {
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(2);
        TestKit.Fill(mm, a, 2, seed: 40);
        var src = new ulong[2];
        var dst = new ulong[2];
        TestThread<bool> writer;
        using (mm.MmapReadLock())
        {
            var args = new MigrateVma { Vma = mm.FindVma(a), Start = a, End = a + (2 * Page), Src = src, Dst = dst, PgmapOwner = _driver.Owner, Flags = MigrateVmaSelect.System };
            Migrate.VmaSetup(ref args);
            mm.ReadPte(a).Kind.Should().Be(PteKind.Migration);
            writer = new TestThread<bool>(() =>
            {
                mm.Write(a + 5, [0xEE]);
                return true;
            });

            writer.Join(TimeSpan.FromMilliseconds(100)).Should().BeFalse("the writer waits on the migration entry");
            for (int i = 0; i < 2; i++)
            {
                _driver.TryAllocateDevicePage(out Pfn device).Should().BeTrue();
                MigratePfn.TryGetPage(src[i], out Pfn source).Should().BeTrue();
                _memory.PageData(source).CopyTo(_memory.PageData(device));
                dst[i] = MigratePfn.FromPfn(device);
            }

            Migrate.VmaPages(ref args);
            Migrate.VmaFinalize(ref args);
        }

        writer.Join(s_hang).Should().BeTrue();
        writer.Result.Should().BeTrue();
        byte[] expected = TestKit.Pattern(a, 2 * (int)Page, seed: 40);
        expected[5] = 0xEE;
        TestKit.ReadBytes(mm, a, 2 * Page).Should().Equal(expected, "the write landed on the final page");
        // At least: a fault that takes the page lock between finalize's unlock and its put sees the migration's
        // reference, declines the page and retries, as in the kernel.
        _driver.MigrateToRamCalls.Should().BeGreaterThanOrEqualTo(2, "the writer saw the device page and faulted it back; so did the final read of the other");
        mm.ShouldBeAccounted(a, 2);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages);
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    [InlineData(13)]
    public void EvictionsRacingMadviseDontNeedNeverFreeAPageTheEvictionStillHoldsLocked(int seed)
    {
        // Finalize releases each page it holds locked and referenced. Should the reference go before the lock, an
        // unmap racing in between drops the mapping's reference, the last one, and the page is freed locked
        // ("bad page state"), in the middle of the unmap's invalidation. Eviction by PFN holds no mmap lock, so it
        // is the migration an madvise can overlap.
        const int pages = 32;
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(pages);
        TestKit.Fill(mm, a, pages, seed);
        const int rounds = 300;
        int done = 0;
        var migrator = new TestThread<int>(() =>
        {
            for (int round = 0; round < rounds; round++)
            {
                _driver.MigrateToDevice(mm, a, a + (pages * Page));
                _driver.EvictAll();   // by PFN, without the mmap lock: madvise can run meanwhile
                Volatile.Write(ref done, round + 1);
            }

            return rounds;
        });

        var random = new Random(seed);
        for (int i = 0; Volatile.Read(ref done) < rounds && !migrator.Join(TimeSpan.Zero); i++)
        {
            int first = random.Next(pages);
            ulong start = a + ((ulong)first * Page);
            if (random.Next(2) == 0)
            {
                mm.Madvise(start, (ulong)(1 + random.Next(pages - first)) * Page, Advice.DontNeed);
            }
            else
            {
                mm.Write(start + (ulong)random.Next((int)Page), [(byte)i]);
            }
        }

        migrator.Join(s_hang).Should().BeTrue($"seed {seed}: the migrator finishes");
        migrator.Result.Should().Be(rounds, $"seed {seed}: the migrator ran without error");
        _driver.EvictAll();
        mm.ShouldBeAccounted(a, pages);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages, $"seed {seed}: every device page came back");
        _memory.FreeRamPages.Should().Be(_freeRamAtStart);
    }

    [Theory]
    [InlineData(7)]
    [InlineData(8)]
    public void EvictionRacingCpuFaultsAndMigrationsLosesNoByte(int seed)
    {
        const int pages = 16;
        var mm = new Mm(_memory);
        ulong a = mm.MapAnonymous(pages);
        byte[] model = TestKit.Pattern(a, pages * (int)Page, seed);
        mm.Write(a, model);
        var random = new Random(seed);
        using var stop = new CancellationTokenSource();
        var migrator = new TestThread<int>(() =>
        {
            int rounds = 0;
            var local = new Random(seed + 1);
            while (!stop.IsCancellationRequested)
            {
                int first = local.Next(pages);
                ulong start = a + ((ulong)first * Page);
                _driver.MigrateToDevice(mm, start, start + ((ulong)(1 + local.Next(pages - first)) * Page));
                rounds++;
            }

            return rounds;
        });
        var evictor = new TestThread<int>(() =>
        {
            int evicted = 0;
            while (!stop.IsCancellationRequested)
            {
                evicted += _driver.EvictAll();
            }

            return evicted;
        });

        for (int i = 0; i < 400; i++)
        {
            int page = random.Next(pages);
            ulong address = a + ((ulong)page * Page) + (ulong)random.Next((int)Page);
            if (random.Next(2) == 0)
            {
                byte value = (byte)random.Next(256);
                mm.Write(address, [value]);
                model[(int)(address - a)] = value;
            }
            else
            {
                TestKit.ReadBytes(mm, address, 1)[0].Should().Be(model[(int)(address - a)], $"seed {seed} step {i} at 0x{address:x}");
            }
        }

        stop.Cancel();
        migrator.Join(s_hang).Should().BeTrue($"seed {seed}: the migrator finishes");
        evictor.Join(s_hang).Should().BeTrue($"seed {seed}: the evictor finishes");
        _ = migrator.Result;
        _ = evictor.Result;
        _driver.EvictAll();
        TestKit.ReadBytes(mm, a, pages * Page).Should().Equal(model, $"seed {seed}: the bytes equal the model");
        mm.ShouldBeAccounted(a, pages);
        Accounting.ShouldBeConsistent(_memory, [mm]);
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages, $"seed {seed}");
        _memory.FreeRamPages.Should().Be(_freeRamAtStart, $"seed {seed}");
    }

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    public void EvictionRacingAnMremapInAForkedChildFindsEveryMovedEntry(int seed)
    {
        const int pages = 8;
        var parent = new Mm(_memory, "parent");
        ulong a = parent.MapAnonymous(pages);
        TestKit.Fill(parent, a, pages, seed);
        Mm child = parent.Fork();
        ulong elsewhere = child.MapAnonymous(pages);
        child.Munmap(elsewhere, pages * Page);
        using var stop = new CancellationTokenSource();
        var mover = new TestThread<ulong>(() =>
        {
            // The child's copy-on-write view hops between two addresses; each move carries device-private and
            // migration entries along while the parent's driver migrates and evicts through the reverse map.
            ulong at = a;
            while (!stop.IsCancellationRequested)
            {
                ulong to = at == a ? elsewhere : a;
                child.Mremap(at, pages * Page, pages * Page, MremapFlags.MayMove | MremapFlags.Fixed, to);
                at = to;
            }

            return at;
        });

        var random = new Random(seed);
        for (int round = 0; round < 60; round++)
        {
            int first = random.Next(pages);
            ulong start = a + ((ulong)first * Page);
            _driver.MigrateToDevice(parent, start, start + ((ulong)(1 + random.Next(pages - first)) * Page));
            _driver.EvictAll();
        }

        stop.Cancel();
        mover.Join(s_hang).Should().BeTrue($"seed {seed}: the mover finishes");
        ulong childAt = mover.Result;
        _driver.EvictAll();
        parent.ShouldHold(a, pages, seed);
        child.ShouldHoldFrom(childAt, pages, a, seed);
        parent.ShouldBeAccounted(a, pages);
        child.ShouldBeAccounted(childAt, pages);
        Accounting.ShouldBeConsistent(_memory, [parent, child]);
        parent.Exit();
        child.Exit();
        Accounting.ShouldBeConsistent(_memory, []);
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages, $"seed {seed}");
        _memory.FreeRamPages.Should().Be(_freeRamAtStart, $"seed {seed}");
    }

    [Theory]
    [InlineData(21)]
    [InlineData(22)]
    [InlineData(23)]
    public void TwoDevicesEvictionForkAndCpuAccessAgreeWithTheByteModel(int seed)
    {
        const int pages = 24;
        var second = new MigrationTestDriver(_memory, "gpu1");
        var mm = new Mm(_memory, "parent");
        ulong a = mm.MapAnonymous(pages);
        byte[] model = TestKit.Pattern(a, pages * (int)Page, seed);
        mm.Write(a, model);
        using var mirror = new Hmm.Tests.Mirroring.DmirrorClient(mm, a, pages * Page);
        using var stop = new CancellationTokenSource();

        TestThread<int> Loop(int salt, Action<Random> step) => new(() =>
        {
            var random = new Random(HashCode.Combine(seed, salt));
            int steps = 0;
            while (!stop.IsCancellationRequested)
            {
                step(random);
                steps++;
            }

            return steps;
        });

        (ulong Start, ulong End) RandomRange(Random random)
        {
            int first = random.Next(pages);
            ulong start = a + ((ulong)first * Page);
            return (start, start + ((ulong)(1 + random.Next(pages - first)) * Page));
        }

        TestThread<int>[] workers =
        [
            Loop(1, random => { (ulong start, ulong end) = RandomRange(random); _driver.MigrateToDevice(mm, start, end); }),
            Loop(2, random => { (ulong start, ulong end) = RandomRange(random); second.MigrateToDevice(mm, start, end); }),
            Loop(3, random => { (ulong start, ulong end) = RandomRange(random); (random.Next(2) == 0 ? _driver : second).MigrateToSystem(mm, start, end); }),
            Loop(4, random => (random.Next(2) == 0 ? _driver : second).EvictAll()),
            Loop(5, random =>
            {
                // A child shares everything copy-on-write, device pages included; it reads, writes its own copy,
                // moves its view, and exits, while the parent's pages keep moving.
                Mm child = mm.Fork();
                ulong at = a + ((ulong)random.Next(pages) * Page);
                TestKit.ReadBytes(child, at, 16);
                child.Write(at, [(byte)random.Next(256)]);
                if (random.Next(2) == 0)
                {
                    child.Mremap(a, pages * Page, pages * Page, MremapFlags.MayMove);
                }

                child.Exit();
            }),
            Loop(6, random =>
            {
                // A mirror faults ranges into its device page table (bringing the drivers' pages back, as a foreign
                // device's hmm_range_fault does) and must never keep an entry the CPU no longer maps.
                (ulong start, ulong end) = RandomRange(random);
                mirror.Fault(start, end, write: random.Next(2) == 0);
                mirror.FindStaleEntries().Should().BeEmpty($"seed {seed}: the mirror follows every migration");
            }),
        ];

        var cpu = new Random(seed);
        for (int i = 0; i < 600; i++)
        {
            ulong address = a + (ulong)cpu.Next(pages * (int)Page);
            if (cpu.Next(2) == 0)
            {
                byte value = (byte)cpu.Next(256);
                mm.Write(address, [value]);
                model[(int)(address - a)] = value;
            }
            else
            {
                TestKit.ReadBytes(mm, address, 1)[0].Should().Be(model[(int)(address - a)], $"seed {seed} step {i} at 0x{address:x}");
            }
        }

        stop.Cancel();
        foreach (TestThread<int> worker in workers)
        {
            worker.Join(s_hang).Should().BeTrue($"seed {seed}: every worker finishes");
            _ = worker.Result;
        }

        TestKit.ReadBytes(mm, a, pages * Page).Should().Equal(model, $"seed {seed}: the bytes equal the model");
        mm.ShouldBeAccounted(a, pages);
        mirror.FindStaleEntries().Should().BeEmpty();
        mirror.Dispose();
        Accounting.ShouldBeConsistent(_memory, [mm], because: $"seed {seed}");
        mm.Exit();
        Accounting.ShouldBeConsistent(_memory, [], because: $"seed {seed}");
        _driver.FreePageCount.Should().Be(_driver.InitialFreePages, $"seed {seed}");
        second.FreePageCount.Should().Be(second.InitialFreePages, $"seed {seed}");
        _memory.FreeRamPages.Should().Be(_freeRamAtStart, $"seed {seed}");
    }
}
