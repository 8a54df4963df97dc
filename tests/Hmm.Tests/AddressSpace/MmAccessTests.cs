using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using FluentAssertions;
using Xunit;

namespace Hmm.Tests.AddressSpace;

public class MmAccessTests
{
    private const int Page = PageSize.Bytes;

    [Fact]
    public void ZeroLengthAccessDoesNothingEvenWhereNothingIsMapped()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);

        mm.Read(0x1234_5000, Span<byte>.Empty);
        mm.Write(0x1234_5000, ReadOnlySpan<byte>.Empty);

        mm.ReadPte(0x1234_5000).IsNone.Should().BeTrue();
        mm.VmaCount.Should().Be(0);
    }

    [Fact]
    public void AccessesSpanAdjacentAreas()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        const ulong Base = 0x4000_0000;
        mm.Mmap(Base, Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
        var file = new SimFile(memory, "f", Page);
        mm.Mmap(Base + Page, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, file);
        mm.VmaCount.Should().Be(2);
        byte[] data = TestKit.Pattern(100, seed: 4);

        mm.Write(Base + Page - 50, data);

        TestKit.ReadBytes(mm, Base + Page - 50, 100).Should().Equal(data);
        var fromFile = new byte[50];
        file.Read(0, fromFile);
        fromFile.Should().Equal(data.AsSpan(50).ToArray());
    }

    [Fact]
    public void WriteThatFailsPartWayKeepsEarlierPagesAndLeavesTheFailingPageAlone()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 3);
        mm.Write(a + Page, [1, 2, 3]);
        mm.Mprotect(a + Page, Page, Protection.Read);
        Pte readOnly = mm.ReadPte(a + Page);

        Action write = () => mm.Write(a + Page - 2, [7, 7, 7, 7]);

        write.Should().Throw<SegmentationFaultException>().Where(e => e.Address == a + Page && e.IsWrite && !e.IsBusError);
        TestKit.ReadBytes(mm, a + Page - 2, 4).Should().Equal(7, 7, 1, 2);
        mm.ReadPte(a + Page).Should().Be(readOnly);
    }

    [Fact]
    public void ReadThatFailsPartWayHasFilledTheBytesBefore()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        const ulong Base = 0x4000_0000;
        mm.Mmap(Base, Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
        mm.Write(Base + Page - 3, [4, 5, 6]);
        var buffer = new byte[6];

        Action read = () => mm.Read(Base + Page - 3, buffer);

        read.Should().Throw<SegmentationFaultException>().Where(e => e.Address == Base + Page && !e.IsWrite);
        buffer.Should().Equal(4, 5, 6, 0, 0, 0);
    }

    [Fact]
    public void WriteOnlyMemoryIsReadableAsOnX86()
    {
        // x86-64 page tables cannot express write-only: PROT_WRITE implies read (access_error accepts a read
        // fault in any accessible area).
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 2, Protection.Write);
        mm.Write(a, [3]);

        TestKit.ReadBytes(mm, a, 1).Should().Equal(3);
        TestKit.ReadBytes(mm, a + Page, 1).Should().Equal(0);
    }

    [Fact]
    public void WriteThroughACleanWritableEntryMarksItDirty()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var mm = new Mm(memory);
        ulong a = TestKit.MapAnonymous(mm, 1);
        mm.Write(a, [1]);
        mm.Madvise(a, Page, Advice.Free);
        Pte clean = mm.ReadPte(a);
        clean.IsWritable.Should().BeTrue();
        clean.IsDirty.Should().BeFalse();

        TestKit.ReadBytes(mm, a, 1).Should().Equal(1);
        mm.ReadPte(a).IsDirty.Should().BeFalse("a read does not dirty");
        mm.Write(a, [2]);

        mm.ReadPte(a).IsDirty.Should().BeTrue();
        mm.ReadPte(a).Pfn.Should().Be(clean.Pfn);
    }

    [Fact]
    public void SharedAnonymousMemoryStaysSharedAcrossFork()
    {
        PhysicalMemory memory = TestKit.NewMemory();
        var parent = new Mm(memory);
        ulong a = TestKit.MapAnonymous(parent, 2, shared: true);
        parent.Write(a, [1]);
        Mm child = parent.Fork();

        child.Write(a + 1, [2]);
        parent.Write(a + Page, [3]);

        TestKit.ReadBytes(parent, a, 2).Should().Equal(1, 2);
        TestKit.ReadBytes(child, a + Page, 1).Should().Equal(3);
        child.ReadPte(a).Pfn.Should().Be(parent.ReadPte(a).Pfn);
        memory.Page(parent.ReadPte(a).Pfn).MapCount.Should().Be(2);
        child.Exit();
        memory.Page(parent.ReadPte(a).Pfn).MapCount.Should().Be(1);
    }

    [Theory]
    [InlineData(20250612)]
    public void ConcurrentAccessForkAndExitAgreeWithAReferenceModel(int seed)
    {
        var run = new ConcurrentAccessRun(seed);
        run.Execute();
        run.Failures.Should().BeEmpty($"the run with seed {seed} must agree with the model (each failure names the seed)");
    }

    /// <summary>
    /// Two workers write and read a private and a shared anonymous mapping of the parent (the same pages, each its own
    /// 8-byte slot per page, holding a per-worker counter that only grows) and their own three-page region (rewritten
    /// whole, so every write crosses page boundaries), while a third thread forks, checks the child and exits it.
    /// </summary>
    private sealed class ConcurrentAccessRun
    {
        private const int Workers = 2;
        private const int Pages = 12;
        private const int RegionPages = 3;
        private const int ForkSlot = 16;
        private const int MinimumForks = 3;
        private static readonly TimeSpan s_workTime = TimeSpan.FromMilliseconds(300);
        private static readonly TimeSpan s_hangLimit = TimeSpan.FromSeconds(60);

        private readonly int _seed;
        private readonly PhysicalMemory _memory = TestKit.NewMemory(ramMiB: 16);
        private readonly Mm _parent;
        private readonly ulong _private;
        private readonly ulong _shared;
        private readonly ulong _regions;
        private readonly long[,] _privateModel = new long[Workers, Pages];
        private readonly long[,] _sharedModel = new long[Workers, Pages];
        private readonly long[] _issued = new long[Workers];
        private readonly long[] _regionVersion = new long[Workers];
        private readonly long[] _regionIssued = new long[Workers];
        private volatile bool _stop;

        public ConcurrentAccessRun(int seed)
        {
            _seed = seed;
            _parent = new Mm(_memory, "parent");
            _private = TestKit.MapAnonymous(_parent, Pages);
            _shared = TestKit.MapAnonymous(_parent, Pages, shared: true);
            _regions = TestKit.MapAnonymous(_parent, Workers * RegionPages);
            _parent.Write(_shared, new byte[Pages * Page]);
            for (int w = 0; w < Workers; w++)
            {
                _parent.Write(Region(w), RegionContent(w, 0));
            }
        }

        public ConcurrentQueue<string> Failures { get; } = new();

        public void Execute()
        {
            ulong freeBefore = _memory.FreeRamPages;
            var threads = new List<Thread>();
            for (int w = 0; w < Workers; w++)
            {
                int worker = w;
                threads.Add(new Thread(() => Guard(() => Work(worker))));
            }

            threads.Add(new Thread(() => Guard(ForkLoop)));
            foreach (Thread thread in threads)
            {
                thread.Start();
            }

            foreach (Thread thread in threads)
            {
                if (!thread.Join(s_hangLimit))
                {
                    Failures.Enqueue($"seed {_seed}: a thread did not finish within {s_hangLimit} (deadlock?)");
                    return;
                }
            }

            if (!Failures.IsEmpty)
            {
                return;
            }

            for (int w = 0; w < Workers; w++)
            {
                for (int p = 0; p < Pages; p++)
                {
                    Expect(ReadSlot(_parent, _private, p, w) == _privateModel[w, p], $"final private slot of worker {w} page {p}");
                    Expect(ReadSlot(_parent, _shared, p, w) == _sharedModel[w, p], $"final shared slot of worker {w} page {p}");
                }

                Expect(TestKit.ReadBytes(_parent, Region(w), RegionPages * Page).AsSpan().SequenceEqual(RegionContent(w, _regionVersion[w])), $"final region of worker {w}");
            }

            // Every child's copies are gone: besides the pages allocated before, only the parent's private pages faulted in since.
            Expect(_memory.FreeRamPages == freeBefore - CountPrivatePagesFaultedIn(), $"RAM after the children exited: {_memory.FreeRamPages} free, {freeBefore} before");
            _parent.Exit();
        }

        private static long ReadSlot(Mm mm, ulong mapping, int page, int slot)
        {
            var bytes = new byte[8];
            mm.Read(mapping + ((ulong)page * Page) + SlotOffset(slot), bytes);
            return BinaryPrimitives.ReadInt64LittleEndian(bytes);
        }

        private static ulong SlotOffset(int slot) => 64 + ((ulong)slot * 8);

        private static byte[] RegionContent(int worker, long version)
        {
            var bytes = new byte[RegionPages * Page];
            for (int i = 8; i < bytes.Length; i++)
            {
                bytes[i] = (byte)((i * 31) ^ (version * 17) ^ (worker << 5) ^ (i >> 8));
            }

            BinaryPrimitives.WriteInt64LittleEndian(bytes, version);
            return bytes;
        }

        private ulong Region(int worker) => _regions + ((ulong)worker * RegionPages * Page);

        private ulong CountPrivatePagesFaultedIn()
        {
            ulong count = 0;
            for (int p = 0; p < Pages; p++)
            {
                Pte pte = _parent.ReadPte(_private + ((ulong)p * Page));
                if (pte.IsPresent && pte.Pfn != PhysicalMemory.ZeroPage)
                {
                    count++;
                }
            }

            return count;
        }

        private void Guard(Action body)
        {
            try
            {
                body();
            }
            catch (Exception error)
            {
                Failures.Enqueue($"seed {_seed}: {error}");
            }
        }

        private void Expect(bool condition, string what)
        {
            if (!condition)
            {
                Failures.Enqueue($"seed {_seed}: {what}");
            }
        }

        private void Work(int w)
        {
            var random = new Random((_seed * 31) + w);
            long[][,] seenIn = [new long[Workers + 1, Pages], new long[Workers + 1, Pages]];
            var slot = new byte[8];
            var page = new byte[Page];
            while (!_stop && Failures.IsEmpty)
            {
                int p = random.Next(Pages);
                switch (random.Next(6))
                {
                    case 0:
                    case 1:
                    {
                        bool shared = random.Next(2) == 0;
                        long value = Interlocked.Increment(ref _issued[w]);
                        BinaryPrimitives.WriteInt64LittleEndian(slot, value);
                        _parent.Write((shared ? _shared : _private) + ((ulong)p * Page) + SlotOffset(w), slot);
                        Volatile.Write(ref (shared ? _sharedModel : _privateModel)[w, p], value);
                        break;
                    }

                    case 2:
                    case 3:
                    {
                        bool shared = random.Next(2) == 0;
                        _parent.Read((shared ? _shared : _private) + ((ulong)p * Page), page);
                        long[,] model = shared ? _sharedModel : _privateModel;
                        long[,] seen = seenIn[shared ? 1 : 0];
                        Expect(BinaryPrimitives.ReadInt64LittleEndian(page.AsSpan((int)SlotOffset(w))) == model[w, p], $"worker {w} reads back its own {(shared ? "shared" : "private")} slot of page {p}");
                        for (int other = 0; other < Workers; other++)
                        {
                            long value = BinaryPrimitives.ReadInt64LittleEndian(page.AsSpan((int)SlotOffset(other)));
                            Expect(value >= seen[other, p], $"worker {w} saw worker {other}'s slot of page {p} go back from {seen[other, p]} to {value}");
                            seen[other, p] = Math.Max(seen[other, p], value);
                        }

                        long forkSlot = BinaryPrimitives.ReadInt64LittleEndian(page.AsSpan(ForkSlot));
                        if (shared)
                        {
                            Expect(forkSlot >= seen[Workers, p], $"shared fork slot of page {p} went back");
                            seen[Workers, p] = Math.Max(seen[Workers, p], forkSlot);
                        }
                        else
                        {
                            Expect(forkSlot == 0, $"a child's private write leaked into the parent's page {p}");
                        }

                        break;
                    }

                    case 4:
                    {
                        long version = Interlocked.Increment(ref _regionIssued[w]);
                        _parent.Write(Region(w), RegionContent(w, version));
                        Volatile.Write(ref _regionVersion[w], version);
                        break;
                    }

                    default:
                    {
                        int offset = random.Next(RegionPages * Page);
                        int length = 1 + random.Next((RegionPages * Page) - offset);
                        byte[] bytes = TestKit.ReadBytes(_parent, Region(w) + (ulong)offset, length);
                        Expect(bytes.AsSpan().SequenceEqual(RegionContent(w, _regionVersion[w]).AsSpan(offset, length)), $"worker {w} reads back [{offset}, +{length}) of its region");
                        break;
                    }
                }
            }
        }

        private void ForkLoop()
        {
            var random = new Random(_seed);
            var stopwatch = Stopwatch.StartNew();
            long marker = 0;
            int forks = 0;
            try
            {
                while (Failures.IsEmpty && (forks < MinimumForks || stopwatch.Elapsed < s_workTime))
                {
                    ForkCheckAndExit(random, $"child{forks++}", ++marker);
                }
            }
            finally
            {
                _stop = true;
            }
        }

        private void ForkCheckAndExit(Random random, string name, long marker)
        {
            long[,] before = Snapshot(_privateModel);
            long[] regionBefore = [.. _regionVersion];
            Mm child = _parent.Fork(name);
            try
            {
                long[] issued = [.. _issued];
                long[] regionIssued = [.. _regionIssued];
                byte[] privateCopy = TestKit.ReadBytes(child, _private, Pages * Page);
                byte[] regionCopy = TestKit.ReadBytes(child, _regions, Workers * RegionPages * Page);
                for (int w = 0; w < Workers; w++)
                {
                    for (int p = 0; p < Pages; p++)
                    {
                        long value = BinaryPrimitives.ReadInt64LittleEndian(privateCopy.AsSpan((p * Page) + (int)SlotOffset(w)));
                        Expect(value >= before[w, p] && value <= issued[w], $"{name}: private slot {w}/{p} holds {value}, outside [{before[w, p]}, {issued[w]}]");
                    }

                    ReadOnlySpan<byte> region = regionCopy.AsSpan(w * RegionPages * Page, RegionPages * Page);
                    long version = BinaryPrimitives.ReadInt64LittleEndian(region);
                    Expect(version >= regionBefore[w] && version <= regionIssued[w], $"{name}: region {w} holds version {version}, outside [{regionBefore[w]}, {regionIssued[w]}]");
                    Expect(region.SequenceEqual(RegionContent(w, version)), $"{name}: region {w} is not one whole write (torn across pages at fork)");
                }

                // The child's own writes: private ones stay in the child, shared ones reach the parent.
                int page = random.Next(Pages);
                var bytes = new byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(bytes, marker);
                child.Write(_private + ((ulong)page * Page) + ForkSlot, bytes);
                child.Write(_regions + (ulong)random.Next(Workers * RegionPages * Page), [0xA5]);
                child.Write(_shared + ((ulong)page * Page) + ForkSlot, bytes);
                Expect(BinaryPrimitives.ReadInt64LittleEndian(TestKit.ReadBytes(_parent, _shared + ((ulong)page * Page) + ForkSlot, 8)) == marker, $"{name}: the parent sees the child's shared write");
                Expect(BinaryPrimitives.ReadInt64LittleEndian(TestKit.ReadBytes(_parent, _private + ((ulong)page * Page) + ForkSlot, 8)) == 0, $"{name}: the child's private write stays in the child");

                // The parent's writes since the fork do not reach the child.
                Thread.Yield();
                BinaryPrimitives.WriteInt64LittleEndian(privateCopy.AsSpan((page * Page) + ForkSlot), marker);
                Expect(TestKit.ReadBytes(child, _private, Pages * Page).AsSpan().SequenceEqual(privateCopy), $"{name}: the child's private copy changed after the fork");
            }
            finally
            {
                child.Exit();
            }
        }

        private static long[,] Snapshot(long[,] model)
        {
            var copy = new long[Workers, Pages];
            for (int w = 0; w < Workers; w++)
            {
                for (int p = 0; p < Pages; p++)
                {
                    copy[w, p] = Volatile.Read(ref model[w, p]);
                }
            }

            return copy;
        }
    }
}
