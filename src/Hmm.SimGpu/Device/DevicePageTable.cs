using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// A device page table keyed by device virtual page number: a dictionary of 1 GiB regions, each an array of 512
/// leaves of 512 entries (2 MiB each), created on first use and dropped when empty. An entry is one ulong,
/// <c>pfn &lt;&lt; 3 | flags</c>, 0 when invalid. A sparse 16 GiB range costs 16 dictionary entries and 8 KiB of
/// leaf per 2 MiB actually mapped; a lookup in the last leaf looked up is one compare and one array indexing,
/// otherwise one dictionary probe (skipped for the last region used) and two array indexings.
/// </summary>
/// <remarks>Concurrency model: not thread-safe; its address space's lock guards it.</remarks>
internal sealed class DevicePageTable
{
    internal const int FlagBits = 3;
    internal const ulong FlagMask = (1UL << FlagBits) - 1;
    private const int LeafShift = 9;
    private const int LeafEntries = 1 << LeafShift;
    private const int RegionShift = LeafShift + 9;
    private const int RegionLeaves = 1 << (RegionShift - LeafShift);

    private const int MaxSpareLeaves = 64;

    private readonly Dictionary<ulong, Region> _regions = [];
    private readonly Stack<ulong[]> _spareLeaves = new();   // emptied leaves kept for reuse: mapping after an unmap allocates nothing
    private ulong _lastKey = ulong.MaxValue;
    private Region? _last;

    // The last non-null leaf Get found, and its vpn >> LeafShift; warps next to each other hit the same 2 MiB.
    // Reset whenever that leaf leaves the table.
    private ulong _lastLeafKey = ulong.MaxValue;
    private ulong[]? _lastLeaf;

    /// <summary>Valid entries in the table.</summary>
    internal long Count { get; private set; }

    internal static ulong Encode(Pfn pfn, DevicePteFlags flags) => pfn.Value << FlagBits | (ulong)flags;

    internal static DevicePte Decode(ulong entry) => new(new Pfn(entry >> FlagBits), (DevicePteFlags)(entry & FlagMask));

    /// <summary>The entry of a page, 0 when invalid.</summary>
    internal ulong Get(ulong vpn)
    {
        ulong leafKey = vpn >> LeafShift;
        ulong[]? leaf = _lastLeaf;
        if (leafKey != _lastLeafKey || leaf is null)
        {
            Region? region = Find(vpn >> RegionShift);
            leaf = region?.Leaves[(int)leafKey & (RegionLeaves - 1)];
            if (leaf is null)
            {
                return 0;
            }

            _lastLeafKey = leafKey;
            _lastLeaf = leaf;
        }

        return leaf[(int)vpn & (LeafEntries - 1)];
    }

    /// <summary>Sets a page's entry (non-zero).</summary>
    internal void Set(ulong vpn, ulong entry)
    {
        ulong key = vpn >> RegionShift;
        Region? region = Find(key);
        if (region is null)
        {
            region = new Region();
            _regions.Add(key, region);
            _lastKey = key;
            _last = region;
        }

        int leafIndex = (int)(vpn >> LeafShift) & (RegionLeaves - 1);
        ulong[]? leaf = region.Leaves[leafIndex];
        if (leaf is null)
        {
            leaf = _spareLeaves.TryPop(out ulong[]? spare) ? spare : new ulong[LeafEntries];
            region.Leaves[leafIndex] = leaf;
            region.LiveLeaves++;
        }

        ref ulong slot = ref leaf[(int)vpn & (LeafEntries - 1)];
        if (slot == 0)
        {
            region.Counts[leafIndex]++;
            Count++;
        }

        slot = entry;
    }

    /// <summary>Removes every valid entry in [vpn, vpn + pages); returns how many.</summary>
    internal long Clear(ulong vpn, ulong pages) => Update(vpn, pages, clear: true, flags: DevicePteFlags.None);

    /// <summary>Sets the flags of every valid entry in [vpn, vpn + pages); returns how many changed.</summary>
    internal long Protect(ulong vpn, ulong pages, DevicePteFlags flags) => Update(vpn, pages, clear: false, flags);

    private long Update(ulong vpn, ulong pages, bool clear, DevicePteFlags flags)
    {
        long changed = 0;
        ulong end = vpn + pages;
        while (vpn < end)
        {
            ulong key = vpn >> RegionShift;
            Region? region = Find(key);
            if (region is null)
            {
                vpn = (key + 1) << RegionShift;
                continue;
            }

            int leafIndex = (int)(vpn >> LeafShift) & (RegionLeaves - 1);
            ulong leafEnd = Math.Min(end, ((vpn >> LeafShift) + 1) << LeafShift);
            ulong[]? leaf = region.Leaves[leafIndex];
            if (leaf is not null)
            {
                for (ulong page = vpn; page < leafEnd; page++)
                {
                    ref ulong slot = ref leaf[(int)page & (LeafEntries - 1)];
                    if (slot == 0)
                    {
                        continue;
                    }

                    if (clear)
                    {
                        slot = 0;
                        changed++;
                        region.Counts[leafIndex]--;
                        Count--;
                    }
                    else if ((slot & FlagMask) != (ulong)flags)
                    {
                        slot = (slot & ~FlagMask) | (ulong)flags;
                        changed++;
                    }
                }

                if (clear && region.Counts[leafIndex] == 0)
                {
                    if (_spareLeaves.Count < MaxSpareLeaves)
                    {
                        _spareLeaves.Push(leaf);   // every slot is 0 again
                    }

                    region.Leaves[leafIndex] = null;
                    if (ReferenceEquals(leaf, _lastLeaf))
                    {
                        _lastLeaf = null;
                        _lastLeafKey = ulong.MaxValue;
                    }

                    if (--region.LiveLeaves == 0)
                    {
                        _regions.Remove(key);
                        _last = null;
                        _lastKey = ulong.MaxValue;
                    }
                }
            }

            vpn = leafEnd;
        }

        return changed;
    }

    private Region? Find(ulong key)
    {
        if (key == _lastKey)
        {
            return _last;
        }

        if (!_regions.TryGetValue(key, out Region? region))
        {
            return null;
        }

        _lastKey = key;
        _last = region;
        return region;
    }

    /// <summary>1 GiB of the table: 512 leaves and their valid-entry counts.</summary>
    private sealed class Region
    {
        internal readonly ulong[]?[] Leaves = new ulong[RegionLeaves][];
        internal readonly int[] Counts = new int[RegionLeaves];
        internal int LiveLeaves;
    }
}
