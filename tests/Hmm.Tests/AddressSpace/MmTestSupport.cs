using FluentAssertions;

namespace Hmm.Tests.AddressSpace;

/// <summary>Shared helpers of the mapping-call tests (mmap, munmap, mprotect, mremap, madvise, fork, lifetime).</summary>
internal static class MmTestSupport
{
    public const ulong Page = PageSize.Bytes;
    public const MapFlags PrivateAnonymous = MapFlags.Private | MapFlags.Anonymous;
    public const MapFlags SharedAnonymous = MapFlags.Shared | MapFlags.Anonymous;

    /// <summary>A small machine: 16 MiB of RAM with page data.</summary>
    public static PhysicalMemory NewMemory() => new(new PhysicalMemoryOptions { RamBytes = 16UL << 20 });

    /// <summary>The byte every test pattern puts at <paramref name="address"/> for <paramref name="seed"/>.</summary>
    public static byte PatternByte(ulong address, int seed) => (byte)((address >> 3) ^ (address >> PageSize.Shift) ^ (ulong)seed ^ 0x5a);

    public static byte[] Pattern(ulong address, int length, int seed)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++)
        {
            bytes[i] = PatternByte(address + (ulong)i, seed);
        }

        return bytes;
    }

    /// <summary>Writes the pattern of <paramref name="seed"/> over <c>[address, address + pages)</c> through the CPU.</summary>
    public static void Fill(Mm mm, ulong address, ulong pages, int seed) =>
        mm.Write(address, Pattern(address, checked((int)(pages * Page)), seed));

    public static byte[] ReadBytes(Mm mm, ulong address, ulong length)
    {
        var bytes = new byte[length];
        mm.Read(address, bytes);
        return bytes;
    }

    /// <summary>Asserts the CPU reads the pattern of <paramref name="seed"/> over the pages.</summary>
    public static void ShouldHold(this Mm mm, ulong address, ulong pages, int seed) =>
        ReadBytes(mm, address, pages * Page).Should().Equal(Pattern(address, checked((int)(pages * Page)), seed), $"[0x{address:x}, +{pages} pages) holds pattern {seed}");

    /// <summary>Asserts the CPU reads, over the pages, the pattern of <paramref name="seed"/> laid at <paramref name="patternBase"/> (a file offset, or where the data was first written).</summary>
    public static void ShouldHoldFrom(this Mm mm, ulong address, ulong pages, ulong patternBase, int seed) =>
        ReadBytes(mm, address, pages * Page).Should().Equal(Pattern(patternBase, checked((int)(pages * Page)), seed), $"[0x{address:x}, +{pages} pages) holds pattern {seed} of 0x{patternBase:x}");

    /// <summary>Asserts the CPU reads zeros over the pages.</summary>
    public static void ShouldReadZeros(this Mm mm, ulong address, ulong pages) =>
        ReadBytes(mm, address, pages * Page).Should().OnlyContain(b => b == 0, $"[0x{address:x}, +{pages} pages) reads zeros");

    public static ulong MapAnonymous(this Mm mm, ulong pages, Protection protection = Protection.ReadWrite) =>
        mm.Mmap(0, pages * Page, protection, PrivateAnonymous);

    public static ulong MapAnonymousAt(this Mm mm, ulong address, ulong pages, Protection protection = Protection.ReadWrite) =>
        mm.Mmap(address, pages * Page, protection, PrivateAnonymous | MapFlags.FixedNoReplace);

    public static (ulong Start, ulong End, VmFlags Flags, ulong PgOff)[] AreaShapes(this Mm mm) =>
        [.. mm.Areas().Select(v => (v.Start, v.End, v.Flags, v.PgOff))];

    public static HmmException ShouldFailWith(this Action action, Errno error) =>
        action.Should().Throw<HmmException>().Where(e => e.Error == error, $"the call fails with {error}").Which;

    public static SegmentationFaultException ShouldSegfault(this Action action) =>
        action.Should().Throw<SegmentationFaultException>().Which;

    /// <summary>A file of <paramref name="pages"/> pages whose bytes are the pattern of <paramref name="seed"/> at their file offset.</summary>
    public static SimFile PatternFile(PhysicalMemory memory, ulong pages, int seed, string name = "file")
    {
        var file = new SimFile(memory, name, pages * Page);
        file.Write(0, Pattern(0, checked((int)(pages * Page)), seed));
        return file;
    }
}

/// <summary>
/// Everything an error must leave as it was: the areas (range, flags, pgoff), free RAM, the number of PTE tables,
/// and for the watched pages the raw entry and, for present entries, the bytes of the page, read from the frame
/// without faulting anything in.
/// </summary>
internal sealed class MmSnapshot
{
    private const ulong WatchedPagesPerAreaEnd = 16;

    private MmSnapshot(Mm mm)
    {
        Mm = mm;
    }

    public Mm Mm { get; }

    public (ulong Start, ulong End, VmFlags Flags, ulong PgOff)[] Areas { get; private set; } = [];

    public ulong FreeRamPages { get; private set; }

    public int PteTables { get; private set; }

    public List<ulong> Addresses { get; } = [];

    public Dictionary<ulong, ulong> Entries { get; } = [];

    public Dictionary<ulong, byte[]> Data { get; } = [];

    /// <summary>
    /// Captures the state of <paramref name="mm"/>, watching the first and last pages of each area and every page
    /// of <paramref name="extra"/>.
    /// </summary>
    public static MmSnapshot Capture(Mm mm, params (ulong Start, ulong End)[] extra)
    {
        var snapshot = new MmSnapshot(mm)
        {
            Areas = mm.AreaShapes(),
            FreeRamPages = mm.Memory.FreeRamPages,
            PteTables = mm.PageTable.PteTableCount,
        };

        var watched = new SortedSet<ulong>();
        foreach ((ulong start, ulong end, _, _) in snapshot.Areas)
        {
            Watch(watched, start, Math.Min(end, start + (WatchedPagesPerAreaEnd * MmTestSupport.Page)));
            Watch(watched, Math.Max(start, end - (WatchedPagesPerAreaEnd * MmTestSupport.Page)), end);
        }

        foreach ((ulong start, ulong end) in extra)
        {
            Watch(watched, start, end);
        }

        foreach (ulong address in watched)
        {
            snapshot.Addresses.Add(address);
            Pte pte = mm.ReadPte(address);
            snapshot.Entries[address] = pte.Raw;
            if (pte.IsPresent)
            {
                snapshot.Data[address] = mm.Memory.ReadPageData(pte.Pfn).ToArray();
            }
        }

        return snapshot;
    }

    /// <summary>Asserts that nothing this snapshot saw has changed.</summary>
    public void ShouldBeUnchanged()
    {
        MmSnapshot now = Capture(Mm, [.. Addresses.Select(a => (a, a + MmTestSupport.Page))]);
        now.Areas.Should().Equal(Areas, "the areas are unchanged");
        now.FreeRamPages.Should().Be(FreeRamPages, "no page was allocated or freed");
        now.PteTables.Should().Be(PteTables, "no page table was allocated or freed");
        foreach (ulong address in Addresses)
        {
            now.Entries[address].Should().Be(Entries[address], $"the entry at 0x{address:x} is unchanged");
            if (Data.TryGetValue(address, out byte[]? bytes))
            {
                now.Data[address].Should().Equal(bytes, $"the page at 0x{address:x} holds the same bytes");
            }
        }

        // The same bytes through the CPU, where the area allows reads. The entries are present, so reading
        // them faults nothing in and changes nothing.
        foreach ((ulong address, byte[] bytes) in Data)
        {
            (ulong Start, ulong End, VmFlags Flags, ulong PgOff) area = Areas.FirstOrDefault(v => v.Start <= address && address < v.End);
            if ((area.Flags & VmFlags.Read) != 0)
            {
                MmTestSupport.ReadBytes(Mm, address, MmTestSupport.Page).Should().Equal(bytes, $"the CPU reads the same bytes at 0x{address:x}");
            }
        }

        Capture(Mm, [.. Addresses.Select(a => (a, a + MmTestSupport.Page))]).Entries.Should().Equal(now.Entries, "reading back changed no entry");
    }

    private static void Watch(SortedSet<ulong> watched, ulong start, ulong end)
    {
        for (ulong address = start & PageSize.Mask; address < end; address += MmTestSupport.Page)
        {
            watched.Add(address);
        }
    }
}

/// <summary>One call the address space made into its notifier chain.</summary>
internal readonly record struct NotifierCall(NotifierCallKind Kind, ulong Start, ulong End, MmuNotifierEvent Event)
{
    /// <summary>The start and the end of one invalidation, as a balanced chain records them.</summary>
    public static NotifierCall[] Pair(ulong start, ulong end, MmuNotifierEvent @event) =>
        [new(NotifierCallKind.Start, start, end, @event), new(NotifierCallKind.End, start, end, @event)];
}

internal enum NotifierCallKind
{
    Start,
    End,
    Release,
}

/// <summary>A notifier chain that records every call, for checking which invalidations an operation issues.</summary>
internal sealed class RecordingNotifierChain : IMmNotifierChain
{
    private readonly Lock _lock = new();
    private readonly List<NotifierCall> _calls = [];

    public static RecordingNotifierChain InstallOn(Mm mm)
    {
        var chain = new RecordingNotifierChain();
        mm.GetOrSetNotifiers(chain).Should().BeSameAs(chain);
        return chain;
    }

    public IReadOnlyList<NotifierCall> Calls
    {
        get
        {
            lock (_lock)
            {
                return [.. _calls];
            }
        }
    }

    /// <summary>The (Start, End, Event) of every invalidation started, in order.</summary>
    public IReadOnlyList<(ulong Start, ulong End, MmuNotifierEvent Event)> Starts =>
        [.. Calls.Where(c => c.Kind == NotifierCallKind.Start).Select(c => (c.Start, c.End, c.Event))];

    public int Releases => Calls.Count(c => c.Kind == NotifierCallKind.Release);

    public void Clear()
    {
        lock (_lock)
        {
            _calls.Clear();
        }
    }

    public bool InvalidateRangeStart(in MmuNotifierRange range)
    {
        Add(new NotifierCall(NotifierCallKind.Start, range.Start, range.End, range.Event));
        return true;
    }

    public void InvalidateRangeEnd(in MmuNotifierRange range) => Add(new NotifierCall(NotifierCallKind.End, range.Start, range.End, range.Event));

    public void Release() => Add(new NotifierCall(NotifierCallKind.Release, 0, 0, MmuNotifierEvent.Release));

    /// <summary>Asserts every start is closed by an end of the same range and event, properly nested.</summary>
    public void ShouldBeBalanced()
    {
        var open = new Stack<NotifierCall>();
        foreach (NotifierCall call in Calls)
        {
            if (call.Kind == NotifierCallKind.Start)
            {
                open.Push(call);
            }
            else if (call.Kind == NotifierCallKind.End)
            {
                open.Should().NotBeEmpty($"{call} ends an invalidation that was started");
                NotifierCall start = open.Pop();
                (call.Start, call.End, call.Event).Should().Be((start.Start, start.End, start.Event), "an end matches the latest open start");
            }
        }

        open.Should().BeEmpty("every started invalidation ended");
    }

    private void Add(NotifierCall call)
    {
        lock (_lock)
        {
            _calls.Add(call);
        }
    }
}

/// <summary>
/// A dedicated background thread running one function, for tests that need a second thread to hold the mmap
/// lock (its guard must be released on the thread that took it, so tasks and awaits do not fit).
/// </summary>
internal sealed class TestThread<T>
{
    private readonly Thread _thread;
    private T? _result;
    private Exception? _error;

    public TestThread(Func<T> body)
    {
        _thread = new Thread(() =>
        {
            try
            {
                _result = body();
            }
            catch (Exception error)
            {
                _error = error;
            }
        })
        {
            IsBackground = true,
        };
        _thread.Start();
    }

    /// <summary>Waits for the thread; false if it is still running after <paramref name="timeout"/>.</summary>
    public bool Join(TimeSpan timeout) => _thread.Join(timeout);

    /// <summary>The function's result once joined; rethrows what it threw.</summary>
    public T Result
    {
        get
        {
            _thread.IsAlive.Should().BeFalse("the thread was joined");
            if (_error is not null)
            {
                throw new InvalidOperationException("The test thread failed.", _error);
            }

            return _result!;
        }
    }
}
