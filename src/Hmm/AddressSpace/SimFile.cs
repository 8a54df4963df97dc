
namespace Hmm;

/// <summary>
/// A simulated file with a page cache (<c>struct address_space</c>). Shared mappings of it and direct
/// <see cref="Read"/>/<see cref="Write"/> calls see the same bytes, because they use the same cached pages.
/// </summary>
/// <remarks>
/// <para>Each cached page is a System RAM page holding one reference for the cache; its mapping field names the
/// file and its index is its page offset. Pages are created, zeroed, on first use and stay cached for the
/// file's life.</para>
/// <para>Concurrency model: <see cref="_lock"/> guards the cache index; page contents are read and written
/// under the page lock, so a direct write and a fault never see half a page.</para>
/// </remarks>
public sealed class SimFile
{
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, Pfn> _cache = [];
    private readonly List<Vma> _mappings = [];
    private bool _released;

    /// <summary>Creates an empty file of the given size.</summary>
    /// <param name="memory">The memory its page cache lives in.</param>
    /// <param name="name">Its name.</param>
    /// <param name="length">Its size in bytes; accesses beyond it through a mapping get <c>SIGBUS</c>.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public SimFile(PhysicalMemory memory, string name, ulong length)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(name);
        Memory = memory;
        Name = name;
        Length = length;
        Handle = memory.Mappings.Register(this);
    }

    /// <summary>The file's name.</summary>
    public string Name { get; }

    /// <summary>The size in bytes.</summary>
    public ulong Length { get; }

    /// <summary>The memory holding the page cache.</summary>
    public PhysicalMemory Memory { get; }

    /// <summary>
    /// Whether shared writable mappings of the file want write-notify (<c>vma_wants_writenotify</c>): a file system
    /// that tracks dirty pages or has a <c>page_mkwrite</c> handler. Then a read fault maps a page read-only and the
    /// first write faults again to make it writable. False (the default) behaves as shmem and anonymous shared memory:
    /// a read fault in an area with <see cref="VmFlags.Shared"/> and <see cref="VmFlags.Write"/> maps the page
    /// writable at once, so a device mirroring it sees write access. Private mappings are copy-on-write either way.
    /// </summary>
    public bool WantsWriteNotify { get; init; }

    /// <summary>How many pages are cached.</summary>
    public int CachedPages
    {
        get
        {
            lock (_lock)
            {
                return _cache.Count;
            }
        }
    }

    internal ulong Handle { get; }

    /// <summary>A snapshot of the cached frames, each holding the cache's one reference (for the tests' whole-memory accounting).</summary>
    internal Pfn[] CachedFrames()
    {
        lock (_lock)
        {
            return [.. _cache.Values];
        }
    }

    // Written so that a length near 2^64 cannot wrap to zero pages.
    internal ulong PageCount => (Length >> PageSize.Shift) + ((Length & (PageSize.Bytes - 1)) != 0 ? 1UL : 0);

    /// <summary>Reads bytes at a file offset through the page cache.</summary>
    /// <param name="offset">The first byte.</param>
    /// <param name="destination">Where to copy to.</param>
    /// <exception cref="HmmException">Error model: invalid argument, nothing changes. <see cref="Errno.EINVAL"/>: the range extends beyond <see cref="Length"/>, or the file is anonymous shared memory (from <see cref="Vma.File"/>) whose last mapping is gone.</exception>
    public void Read(ulong offset, Span<byte> destination) => Access(offset, destination.Length, destination, default, write: false);

    /// <summary>Writes bytes at a file offset through the page cache.</summary>
    /// <param name="offset">The first byte.</param>
    /// <param name="source">What to write.</param>
    /// <exception cref="HmmException">Error model: invalid argument, nothing changes. <see cref="Errno.EINVAL"/>: as for <see cref="Read"/>.</exception>
    public void Write(ulong offset, ReadOnlySpan<byte> source) => Access(offset, source.Length, default, source, write: true);

    /// <summary>The cached page at <paramref name="index"/>, created if absent, with an extra reference for the caller.</summary>
    internal Pfn GetPage(ulong index)
    {
        lock (_lock)
        {
            if (_released)
            {
                // Nothing would ever put a page cached now: the file dropped its cache with its last mapping.
                ThrowHelper.ThrowHmm(Errno.EINVAL, $"File '{Name}' is anonymous shared memory whose last mapping is gone.");
            }

            if (!_cache.TryGetValue(index, out Pfn pfn))
            {
                pfn = Memory.AllocatePage();
                if (Memory.StoresPageData)
                {
                    Memory.PageData(pfn).Clear();
                }

                ref PageFrame frame = ref Memory.Frame(pfn);
                frame._mapping = Handle;
                frame._index = index;
                Interlocked.Or(ref frame._flags, (ulong)PageFlags.Uptodate);
                _cache.Add(index, pfn);
            }

            Memory.GetPage(pfn);
            return pfn;
        }
    }

    internal void AddMapping(Vma vma)
    {
        if (!TryAddMapping(vma))
        {
            ThrowHelper.ThrowBug($"A mapping was added to '{Name}' after its last one went.");
        }
    }

    /// <summary>Adds a mapping unless the file is anonymous shared memory that has already dropped its pages.</summary>
    internal bool TryAddMapping(Vma vma)
    {
        lock (_lock)
        {
            if (_released)
            {
                return false;
            }

            _mappings.Add(vma);
            return true;
        }
    }

    /// <summary>
    /// Whether the file is the anonymous shared memory behind a <c>MAP_SHARED | MAP_ANONYMOUS</c> mapping: nothing
    /// but its mappings can reach it, so it drops its pages when the last one goes (the kernel's shmem inode
    /// dies with its last reference).
    /// </summary>
    internal bool IsAnonymousShmem { get; init; }

    internal void RemoveMapping(Vma vma)
    {
        lock (_lock)
        {
            _mappings.Remove(vma);
            if (IsAnonymousShmem && _mappings.Count == 0)
            {
                foreach (Pfn pfn in _cache.Values)
                {
                    Memory.PutPage(pfn);
                }

                _cache.Clear();
                Memory.Mappings.Unregister(Handle);
                _released = true;
            }
        }
    }

    /// <summary>A snapshot of the areas mapping this file (<c>i_mmap</c>).</summary>
    internal Vma[] Mappings()
    {
        lock (_lock)
        {
            return [.. _mappings];
        }
    }

    private void Access(ulong offset, int length, Span<byte> destination, ReadOnlySpan<byte> source, bool write)
    {
        if (offset > Length || (ulong)length > Length - offset)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"Range at offset {offset} of {length} bytes extends beyond file '{Name}' ({Length} bytes).");
        }

        int done = 0;
        while (done < length)
        {
            ulong position = offset + (ulong)done;
            int inPage = (int)(position & (PageSize.Bytes - 1));
            int chunk = Math.Min(length - done, PageSize.Bytes - inPage);
            Pfn pfn = GetPage(position >> PageSize.Shift);
            Memory.LockPage(pfn);
            try
            {
                Span<byte> data = Memory.PageData(pfn).Slice(inPage, chunk);
                if (write)
                {
                    source.Slice(done, chunk).CopyTo(data);
                    Interlocked.Or(ref Memory.Frame(pfn)._flags, (ulong)PageFlags.Dirty);
                }
                else
                {
                    data.CopyTo(destination.Slice(done, chunk));
                }
            }
            finally
            {
                Memory.UnlockPage(pfn);
                Memory.PutPage(pfn);
            }

            done += chunk;
        }
    }
}
