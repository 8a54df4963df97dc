using System.Numerics;
using System.Runtime.CompilerServices;

namespace Hmm.Drivers;

/// <summary>
/// The driver's per-block metadata (<c>uvm_va_block_t</c>, reduced to what residency needs), as arrays indexed by
/// block id: no per-page object. Per block: its address space and address, the count and mask of resident pages, a
/// mask of pages the device may map in System RAM, and, while any page is resident, a 512-entry array of device
/// PFNs (pooled, so a block that leaves device memory returns it).
/// </summary>
/// <remarks>
/// Concurrency model: not thread-safe; the driver guards it with its metadata lock. The mask of RAM mappings is
/// only read and written by the servicing thread (under the service lock) and may over-approximate: a bit means
/// "maybe mapped", and a stale bit only costs an unneeded unmap.
/// </remarks>
internal sealed class VaBlockTable
{
    public const int PageShift = 9;
    public const int Pages = 1 << PageShift;
    public const int Words = Pages / 64;
    public const ulong Bytes = (ulong)Pages * PageSize.Bytes;

    private GpuVaSpace?[] _space = new GpuVaSpace?[64];
    private ulong[] _address = new ulong[64];
    private int[] _resident = new int[64];
    private ulong[] _residentBits = new ulong[64 * Words];
    private ulong[] _ramMapped = new ulong[64 * Words];
    private ulong[]?[] _pfns = new ulong[]?[64];
    private bool[] _live = new bool[64];
    private readonly Stack<int> _freeIds = new();
    private readonly Stack<ulong[]> _pfnPool = new();
    private int _highWater;
    private int _liveCount;

    /// <summary>Blocks in use (attached or orphaned with resident pages).</summary>
    public int LiveCount => _liveCount;

    /// <summary>One past the highest id ever handed out.</summary>
    public int HighWater => _highWater;

    public int Create(GpuVaSpace space, ulong address)
    {
        if (!_freeIds.TryPop(out int id))
        {
            id = _highWater++;
            if (id == _space.Length)
            {
                int size = _space.Length * 2;
                Array.Resize(ref _space, size);
                Array.Resize(ref _address, size);
                Array.Resize(ref _resident, size);
                Array.Resize(ref _residentBits, size * Words);
                Array.Resize(ref _ramMapped, size * Words);
                Array.Resize(ref _pfns, size);
                Array.Resize(ref _live, size);
            }
        }

        _space[id] = space;
        _address[id] = address;
        _resident[id] = 0;
        _live[id] = true;
        _liveCount++;
        return id;
    }

    /// <summary>Gives the id back; the block must hold no device page.</summary>
    public void Release(int id)
    {
        if (_resident[id] != 0)
        {
            throw new KernelBugException($"Block {id} still holds {_resident[id]} device pages.");
        }

        _space[id] = null;
        _live[id] = false;
        _ramMapped.AsSpan(id * Words, Words).Clear();
        _liveCount--;
        _freeIds.Push(id);
    }

    /// <summary>The block's address space left; the block lives on until its last device page is freed.</summary>
    public void Orphan(int id) => _space[id] = null;

    public bool IsLive(int id) => (uint)id < (uint)_highWater && _live[id];

    public GpuVaSpace? SpaceOf(int id) => _space[id];

    public ulong AddressOf(int id) => _address[id];

    public int ResidentCount(int id) => _resident[id];

    public ReadOnlySpan<ulong> ResidentBits(int id) => _residentBits.AsSpan(id * Words, Words);

    public Span<ulong> RamMapped(int id) => _ramMapped.AsSpan(id * Words, Words);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong PfnOf(int id, int page) => _pfns[id] is { } pfns ? pfns[page] : 0;

    /// <summary>Records a device page; returns true when it is the block's first.</summary>
    public bool SetResident(int id, int page, Pfn pfn)
    {
        ulong[] pfns = _pfns[id] ??= _pfnPool.TryPop(out ulong[]? pooled) ? pooled : new ulong[Pages];
        ref ulong word = ref _residentBits[(id * Words) + (page >> 6)];
        ulong bit = 1UL << (page & 63);
        if ((word & bit) != 0)
        {
            throw new KernelBugException($"Page {page} of block {id} is already resident at PFN 0x{pfns[page]:x}.");
        }

        word |= bit;
        pfns[page] = pfn.Value;
        return ++_resident[id] == 1;
    }

    /// <summary>Forgets a device page if the block still records it; returns true when the block became empty.</summary>
    public bool ClearResident(int id, int page, Pfn pfn, out bool cleared)
    {
        cleared = false;
        ulong[]? pfns = _pfns[id];
        if (pfns is null || pfns[page] != pfn.Value)
        {
            return false;
        }

        pfns[page] = 0;
        _residentBits[(id * Words) + (page >> 6)] &= ~(1UL << (page & 63));
        cleared = true;
        if (--_resident[id] != 0)
        {
            return false;
        }

        _pfns[id] = null;
        _pfnPool.Push(pfns);
        return true;
    }

    /// <summary>Copies the device PFNs of the block's resident pages into <paramref name="pfns"/>; returns how many.</summary>
    public int CollectResident(int id, Span<ulong> pfns)
    {
        int count = 0;
        ulong[]? table = _pfns[id];
        if (table is null)
        {
            return 0;
        }

        ReadOnlySpan<ulong> bits = ResidentBits(id);
        for (int w = 0; w < Words; w++)
        {
            ulong word = bits[w];
            while (word != 0)
            {
                int page = (w << 6) + BitOperations.TrailingZeroCount(word);
                word &= word - 1;
                pfns[count++] = table[page];
            }
        }

        return count;
    }

    /// <summary>The zone-device word that ties a device page to (block, page): 0 means none.</summary>
    public static ulong Encode(int id, int page) => ((ulong)(id + 1) << PageShift) | (uint)page;

    public static bool TryDecode(ulong value, out int id, out int page)
    {
        id = (int)((value >> PageShift) - 1);
        page = (int)(value & (Pages - 1));
        return value != 0;
    }
}
