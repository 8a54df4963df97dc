using System.Collections.ObjectModel;
using System.Numerics;
using Hmm.Devices;
using Microsoft.Extensions.Logging;

namespace Hmm.SimGpu;

/// <summary>
/// The simulated GPU's memory (<see cref="IDeviceMemory"/>): one physical region claimed at construction (the
/// device's BAR), whose pagemaps of up to 256 MiB are registered the first time an allocation needs them, and a
/// free pool kept in arrays: a bitmap of free pages, a free count per chunk, and per free count a list of chunks,
/// so that an allocation finds the chunk that fits best in O(1) and no page ever has an object of its own.
/// </summary>
/// <remarks>
/// <para>Pagemaps are registered with <see cref="Memremap.Map"/> and torn down by one release action that the
/// device attached at construction: actions run in reverse order at unbind, so every action a driver attaches
/// later (its eviction) runs before the pagemaps' teardown waits for their pages.</para>
/// <para>Concurrency model. Lock order: <c>_registerLock</c>, then the core's hotplug lock (inside Memremap).
/// <c>_lock</c> is a leaf: nothing is called while holding it. Page-frame set-up (InitDevicePage) and the client's
/// callbacks run without any of these locks.</para>
/// </remarks>
internal sealed class SimDeviceMemory : IDeviceMemory, IDevPagemapOps
{
    /// <summary>The largest pagemap, as the kernel test driver's 256 MiB chunks.</summary>
    internal const long MaxPagemapBytes = 256L << 20;

    private readonly SimulatedGpu _gpu;
    private readonly PhysicalMemory _memory;
    private readonly ulong _basePfn;
    private readonly int _chunkPages;
    private readonly int _chunks;
    private readonly int _chunksPerPagemap;

    // _lock guards the free pool: _free, _chunkFree, _next, _prev, _bucketHead, _bucketBits,
    // _allocated. Never held while calling into the core or a client; a spin gate, as the sections are short and
    // every device page freed takes it.
    private readonly SpinGate _lock = new();
    private readonly ulong[] _free;
    private readonly int[] _chunkFree;
    private readonly int[] _next;
    private readonly int[] _prev;
    private readonly int[] _bucketHead;
    private readonly ulong[] _bucketBits;
    private long _allocated;

    // _registerLock guards _pagemaps, _pagemapView and _tornDown and serialises registrations; held across
    // Memremap.Map (which takes the hotplug lock inside it).
    private readonly Lock _registerLock = new();
    private DevPagemap[] _pagemaps = [];
    private ReadOnlyCollection<DevPagemap> _pagemapView = new([]);
    private bool _tornDown;

    // Chunks [0, _registeredChunks), pages [0, _registeredPages), have live pagemaps; written under _registerLock
    // (pages after chunks), read lock-free.
    private int _registeredChunks;
    private long _registeredPages;
    private IDeviceMemoryClient? _client;

    internal SimDeviceMemory(SimulatedGpu gpu, SimGpuOptions options, PhysicalRange region)
    {
        _gpu = gpu;
        _memory = gpu.Memory;
        Type = options.MemoryType;
        Owner = new SimGpuOwner(gpu.Name);
        Region = region;
        _basePfn = region.StartPfn.Value;
        _chunkPages = (int)(options.ChunkBytes >> PageSize.Shift);
        _chunks = (int)(options.MemoryBytes / options.ChunkBytes);
        _chunksPerPagemap = (int)Math.Max(1, MaxPagemapBytes / options.ChunkBytes);
        CapacityPages = options.MemoryBytes >> PageSize.Shift;
        _free = new ulong[CapacityPages / 64];
        _chunkFree = new int[_chunks];
        _next = new int[_chunks];
        _prev = new int[_chunks];
        _bucketHead = new int[_chunkPages + 1];
        _bucketHead.AsSpan().Fill(-1);
        _bucketBits = new ulong[(_chunkPages + 64) / 64];
    }

    /// <inheritdoc/>
    public MemoryType Type { get; }

    /// <inheritdoc/>
    public object Owner { get; }

    /// <inheritdoc/>
    public long CapacityPages { get; }

    /// <inheritdoc/>
    public long FreePages
    {
        get
        {
            using (_lock.Enter())
            {
                return CapacityPages - _allocated;
            }
        }
    }

    /// <inheritdoc/>
    public int ChunkPages => _chunkPages;

    /// <inheritdoc/>
    public IReadOnlyList<DevPagemap> Pagemaps => Volatile.Read(ref _pagemapView);

    /// <summary>The physical region the device's memory occupies.</summary>
    internal PhysicalRange Region { get; }

    /// <inheritdoc/>
    public void Attach(IDeviceMemoryClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        if (Interlocked.CompareExchange(ref _client, client, null) is not null)
        {
            throw new HmmException(Errno.EBUSY, $"Device '{_gpu.Name}' memory already has a client.");
        }
    }

    /// <inheritdoc/>
    public int Allocate(Span<Pfn> pages)
    {
        // After teardown began, no page is handed out: the pagemaps are dying or gone.
        if (pages.IsEmpty || Volatile.Read(ref _tornDown))
        {
            return 0;
        }

        if (_gpu.Injection.ConsumeAllocationFailure())
        {
            Interlocked.Increment(ref _gpu.Counters.FailedAllocations);
            return 0;
        }

        int taken = 0;
        while (true)
        {
            int registeredSeen = Volatile.Read(ref _registeredChunks);
            bool canRegister = registeredSeen < _chunks;
            bool needRegister;
            using (_lock.Enter())
            {
                needRegister = TakeUnsynchronized(pages, ref taken, canRegister);
            }

            if (!needRegister || !RegisterNextPagemap(registeredSeen))
            {
                break;
            }
        }

        int initialised = InitPages(pages[..taken]);
        Interlocked.Add(ref _gpu.Counters.PagesAllocated, initialised);
        TraceEmitter trace = _memory.Trace;
        if (initialised > 0 && trace.IsEnabled)
        {
            TraceAllocation(trace, pages[0], initialised);
        }

        return initialised;
    }

    /// <inheritdoc/>
    public bool Contains(Pfn page)
    {
        return page.Value - _basePfn < (ulong)Volatile.Read(ref _registeredPages);
    }

    /// <inheritdoc/>
    public int ChunkOf(Pfn page)
    {
        if (!Contains(page))
        {
            throw new HmmException(Errno.EINVAL, $"{page} is not a page of device '{_gpu.Name}'.");
        }

        return (int)((page.Value - _basePfn) / (ulong)_chunkPages);
    }

    /// <summary>Takes a device page back when its last reference is put (<c>folio_free</c>), then tells the client.</summary>
    public void PageFree(DevPagemap pagemap, Pfn pfn)
    {
        ulong index = pfn.Value - _basePfn;
        if (index >= (ulong)CapacityPages)
        {
            throw new KernelBugException($"Device '{_gpu.Name}' was asked to free {pfn}, which is not its page.");
        }

        using (_lock.Enter())
        {
            ref ulong word = ref _free[(int)(index >> 6)];
            ulong bit = 1UL << (int)(index & 63);
            if ((word & bit) != 0)
            {
                throw new KernelBugException($"Device '{_gpu.Name}' page {pfn} was freed twice.");
            }

            word |= bit;
            int chunk = (int)(index / (ulong)_chunkPages);
            MoveChunkUnsynchronized(chunk, _chunkFree[chunk] + 1);
            _allocated--;

            // Under the lock, so the pages in use that the events carry follow each other in the trace.
            TraceEmitter trace = _memory.Trace;
            if (trace.IsEnabled)
            {
                trace.Emit(TraceEvent.DeviceFree(_gpu.TraceDevice, pfn.Value, 1, (ulong)_allocated, _gpu.VirtualClock.Now));
            }
        }

        Interlocked.Increment(ref _gpu.Counters.PagesFreed);
        Volatile.Read(ref _client)?.PageFreed(pfn);
    }

    /// <summary>A CPU fault on a device-private page: the attached client migrates it back, or the access gets SIGBUS.</summary>
    public VmFaultResult MigrateToRam(in DevicePrivateFault fault) =>
        Volatile.Read(ref _client) is { } client ? client.MigrateToRam(in fault) : VmFaultResult.Sigbus;

    /// <summary>
    /// The release action attached at construction: no pagemap is registered any more, and every registered one is
    /// torn down (each waits until its pages are free).
    /// </summary>
    internal async Task TeardownAsync()
    {
        DevPagemap[] pagemaps;
        lock (_registerLock)
        {
            Volatile.Write(ref _tornDown, true);
            pagemaps = _pagemaps;
        }

        foreach (DevPagemap pagemap in pagemaps)
        {
            await Memremap.UnmapAsync(pagemap).ConfigureAwait(false);
        }

        Volatile.Write(ref _registeredPages, 0);
        Log.PagemapsRemoved(_gpu.Logger, _gpu.Name, pagemaps.Length, null);
    }

    // One DeviceAlloc per allocation (its pages need not be consecutive: the first page and the count), with the
    // pages in use read under the pool lock, as the frees' are.
    private void TraceAllocation(TraceEmitter trace, Pfn first, int pages)
    {
        using (_lock.Enter())
        {
            trace.Emit(TraceEvent.DeviceAlloc(_gpu.TraceDevice, first.Value, (ulong)pages, (ulong)_allocated, _gpu.VirtualClock.Now));
        }
    }

    /// <summary>
    /// Takes pages into <paramref name="pages"/> from index <paramref name="taken"/>, from as few chunks as possible:
    /// whole free chunks for whole-chunk parts of the request, then the chunk whose free pages fit the remainder
    /// best. Returns true when it stopped because a new pagemap would serve the request better.
    /// </summary>
    private bool TakeUnsynchronized(Span<Pfn> pages, ref int taken, bool canRegister)
    {
        while (taken < pages.Length)
        {
            int remaining = pages.Length - taken;
            int bucket = remaining >= _chunkPages
                ? (_bucketHead[_chunkPages] >= 0 ? _chunkPages : -1)
                : FirstBucketAtLeast(remaining);
            if (bucket < 0)
            {
                if (canRegister)
                {
                    return true;
                }

                bucket = HighestBucket();
                if (bucket < 0)
                {
                    return false;
                }
            }

            int chunk = _bucketHead[bucket];
            int count = Math.Min(remaining, bucket);
            TakeFromChunkUnsynchronized(chunk, pages.Slice(taken, count));
            taken += count;
        }

        return false;
    }

    /// <summary>Takes the lowest free pages of a chunk, in ascending order.</summary>
    private void TakeFromChunkUnsynchronized(int chunk, Span<Pfn> pages)
    {
        int word = (int)((long)chunk * _chunkPages >> 6);
        int filled = 0;
        while (filled < pages.Length)
        {
            ulong bits = _free[word];
            while (bits != 0 && filled < pages.Length)
            {
                int bit = BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
                pages[filled++] = new Pfn(_basePfn + ((ulong)word << 6) + (ulong)bit);
            }

            _free[word] = bits;
            word++;
        }

        MoveChunkUnsynchronized(chunk, _chunkFree[chunk] - pages.Length);
        _allocated += pages.Length;
    }

    /// <summary>Hands the taken pages to the caller (refcount 1, locked); pages of a pagemap that is going away go back.</summary>
    private int InitPages(Span<Pfn> pages)
    {
        for (int i = 0; i < pages.Length; i++)
        {
            DevPagemap pagemap = PagemapOf(pages[i]);
            try
            {
                pagemap.InitDevicePage(pages[i]);
            }
            catch (HmmException error) when (error.Error == Errno.ENODEV)
            {
                // The device is unbinding: the rest is not handed out, and goes back to the pool untouched.
                ReturnPages(pages[i..]);
                return i;
            }
        }

        return pages.Length;
    }

    private void ReturnPages(ReadOnlySpan<Pfn> pages)
    {
        using (_lock.Enter())
        {
            foreach (Pfn pfn in pages)
            {
                ulong index = pfn.Value - _basePfn;
                _free[(int)(index >> 6)] |= 1UL << (int)(index & 63);
                int chunk = (int)(index / (ulong)_chunkPages);
                MoveChunkUnsynchronized(chunk, _chunkFree[chunk] + 1);
                _allocated--;
            }
        }
    }

    private DevPagemap PagemapOf(Pfn pfn)
    {
        int chunk = (int)((pfn.Value - _basePfn) / (ulong)_chunkPages);
        return Volatile.Read(ref _pagemaps)[chunk / _chunksPerPagemap];
    }

    /// <summary>
    /// Registers the next pagemap, unless another thread already did since <paramref name="registeredSeen"/> was read.
    /// Returns false when nothing more can be registered (the device is going away, or registration failed).
    /// </summary>
    private bool RegisterNextPagemap(int registeredSeen)
    {
        lock (_registerLock)
        {
            if (_registeredChunks != registeredSeen)
            {
                return true;
            }

            if (_tornDown || !_gpu.Device.IsBound)
            {
                return false;
            }

            int index = _pagemaps.Length;
            int firstChunk = index * _chunksPerPagemap;
            int chunks = Math.Min(_chunksPerPagemap, _chunks - firstChunk);
            ulong start = Region.Start + ((ulong)firstChunk * (ulong)_chunkPages << PageSize.Shift);
            var range = new PhysicalRange(start, (ulong)chunks * (ulong)_chunkPages << PageSize.Shift);
            DevPagemap pagemap;
            try
            {
                pagemap = Memremap.Map(_memory, new DevPagemapOptions
                {
                    Type = Type,
                    Ranges = [range],
                    Owner = Owner,
                    Ops = this,
                    Name = $"{_gpu.Name} memory {index}",
                });
            }
            catch (HmmException error)
            {
                // An injected core failure (or a conflicting registration): the allocation gets fewer pages.
                Log.PagemapRegistrationFailed(_gpu.Logger, _gpu.Name, index, error.Error, null);
                return false;
            }

            DevPagemap[] grown = [.. _pagemaps, pagemap];
            Volatile.Write(ref _pagemaps, grown);
            Volatile.Write(ref _pagemapView, new ReadOnlyCollection<DevPagemap>(grown));
            using (_lock.Enter())
            {
                for (int i = firstChunk + chunks - 1; i >= firstChunk; i--)
                {
                    int word = (int)((long)i * _chunkPages >> 6);
                    _free.AsSpan(word, _chunkPages >> 6).Fill(ulong.MaxValue);
                    _chunkFree[i] = 0;
                    MoveChunkUnsynchronized(i, _chunkPages);
                }
            }

            Volatile.Write(ref _registeredChunks, firstChunk + chunks);
            Volatile.Write(ref _registeredPages, (long)(firstChunk + chunks) * _chunkPages);
            Interlocked.Increment(ref _gpu.Counters.PagemapsRegistered);
            Log.PagemapRegistered(_gpu.Logger, _gpu.Name, index, range.ToString(), null);
            return true;
        }
    }

    /// <summary>Moves a chunk to the list of its new free count (no list at 0). O(1).</summary>
    private void MoveChunkUnsynchronized(int chunk, int newFree)
    {
        int oldFree = _chunkFree[chunk];
        if (oldFree > 0)
        {
            int prev = _prev[chunk];
            int next = _next[chunk];
            if (prev >= 0)
            {
                _next[prev] = next;
            }
            else
            {
                _bucketHead[oldFree] = next;
                if (next < 0)
                {
                    _bucketBits[oldFree >> 6] &= ~(1UL << (oldFree & 63));
                }
            }

            if (next >= 0)
            {
                _prev[next] = prev;
            }
        }

        _chunkFree[chunk] = newFree;
        if (newFree > 0)
        {
            int head = _bucketHead[newFree];
            _prev[chunk] = -1;
            _next[chunk] = head;
            if (head >= 0)
            {
                _prev[head] = chunk;
            }

            _bucketHead[newFree] = chunk;
            _bucketBits[newFree >> 6] |= 1UL << (newFree & 63);
        }
    }

    private int FirstBucketAtLeast(int count)
    {
        int word = count >> 6;
        ulong bits = _bucketBits[word] & (ulong.MaxValue << (count & 63));
        while (true)
        {
            if (bits != 0)
            {
                return (word << 6) + BitOperations.TrailingZeroCount(bits);
            }

            if (++word == _bucketBits.Length)
            {
                return -1;
            }

            bits = _bucketBits[word];
        }
    }

    private int HighestBucket()
    {
        for (int word = _bucketBits.Length - 1; word >= 0; word--)
        {
            if (_bucketBits[word] != 0)
            {
                return (word << 6) + 63 - BitOperations.LeadingZeroCount(_bucketBits[word]);
            }
        }

        return -1;
    }

    /// <summary>The pagemap owner of one simulated GPU's pages; its name is the device's, for diagnostics.</summary>
    private sealed class SimGpuOwner(string name)
    {
        public override string ToString() => $"simulated GPU '{name}'";
    }
}
