namespace Hmm.Drivers;

/// <summary>
/// Which open mirror migrated each in-use device page: the kernel test driver keeps this in the page itself
/// (<c>rpage->zone_device_data</c>), which the simulated device's pages do not lend to drivers. One array per
/// pagemap, indexed by the page's offset in it, found through the pagemap id the struct page carries: O(1) per
/// page, allocating only when a new pagemap appears.
/// </summary>
/// <remarks>Concurrency model: every member takes the table's lock; no callback runs under it.</remarks>
internal sealed class DmirrorPageOwners
{
    private readonly PhysicalMemory _memory;
    private readonly Lock _lock = new();
    private Slot[] _slots = new Slot[4];

    public DmirrorPageOwners(PhysicalMemory memory) => _memory = memory;

    /// <summary>Records (or, with null, forgets) the mirror that owns a device page.</summary>
    /// <param name="page">A page of a device pagemap.</param>
    /// <param name="owner">The mirror, or null.</param>
    public void Set(Pfn page, Dmirror? owner)
    {
        DevPagemap? pagemap = DevPagemap.OfPage(_memory, page);
        if (pagemap is null)
        {
            return;
        }

        lock (_lock)
        {
            Dmirror?[]? owners = Owners(pagemap, create: owner is not null);
            if (owners is not null)
            {
                owners[Offset(pagemap, page)] = owner;
            }
        }
    }

    /// <summary>The mirror that owns a device page, or null.</summary>
    /// <param name="page">Any page frame.</param>
    /// <returns>The owner recorded by <see cref="Set"/>.</returns>
    public Dmirror? Get(Pfn page)
    {
        DevPagemap? pagemap = DevPagemap.OfPage(_memory, page);
        if (pagemap is null)
        {
            return null;
        }

        lock (_lock)
        {
            return Owners(pagemap, create: false) is { } owners ? owners[Offset(pagemap, page)] : null;
        }
    }

    /// <summary>Forgets every page a closing mirror owned, so the table never keeps it alive.</summary>
    /// <param name="owner">The mirror.</param>
    public void Forget(Dmirror owner)
    {
        lock (_lock)
        {
            foreach (Slot slot in _slots)
            {
                if (slot.Owners is { } owners)
                {
                    for (int i = 0; i < owners.Length; i++)
                    {
                        if (ReferenceEquals(owners[i], owner))
                        {
                            owners[i] = null;
                        }
                    }
                }
            }
        }
    }

    // A page's offset in its pagemap: its ranges laid end to end (usually one range).
    private static long Offset(DevPagemap pagemap, Pfn page)
    {
        IReadOnlyList<PhysicalRange> ranges = pagemap.Ranges;
        ulong before = 0;
        for (int i = 0; i < ranges.Count; i++)
        {
            PhysicalRange range = ranges[i];
            if (range.Contains(page))
            {
                return (long)(before + (page.Value - range.StartPfn.Value));
            }

            before += range.PageCount;
        }

        throw new KernelBugException($"Page {page} is not in pagemap '{pagemap.Name}' whose id it carries.");
    }

    // Caller holds _lock. Pagemap ids are reused after removal, so a slot also remembers which pagemap it is for.
    private Dmirror?[]? Owners(DevPagemap pagemap, bool create)
    {
        int id = pagemap.Id;
        if (id >= _slots.Length)
        {
            if (!create)
            {
                return null;
            }

            Array.Resize(ref _slots, Math.Max(id + 1, _slots.Length * 2));
        }

        ref Slot slot = ref _slots[id];
        if (!ReferenceEquals(slot.Pagemap, pagemap))
        {
            if (!create)
            {
                return null;
            }

            slot = new Slot(pagemap, new Dmirror?[checked((int)pagemap.PageCount)]);
        }

        return slot.Owners;
    }

    private readonly record struct Slot(DevPagemap? Pagemap, Dmirror?[]? Owners);
}
