namespace Hmm;

// Memory hotplug: bringing device ranges' struct pages online and offline, the physical resource tree, and the
// registry of ZONE_DEVICE page owners. Rule: every member here named ...Unsynchronized requires the caller to
// hold HotplugLock (the kernel's mem_hotplug_lock); the public members take it themselves. Readers (Frame,
// IsPresent, FindPagemapId, ZoneDeviceOwner) never take it: they see published state through volatile reads.
public sealed partial class PhysicalMemory
{
    /// <summary>The name of the resource that covers System RAM.</summary>
    public const string SystemRamResourceName = "System RAM";

    /// <summary>Subsection state: no struct pages (a hole).</summary>
    internal const int OfflineSubsection = 0;

    /// <summary>Subsection state: System RAM.</summary>
    internal const int RamSubsection = -1;

    private readonly Lock _hotplugLock = new();
    private readonly List<IoResource> _resources = [];
    private IZoneDevicePageOwner?[] _zoneDeviceOwners = new IZoneDevicePageOwner?[8];

    /// <summary>The hotplug lock. Held across a whole registration or removal of a device range.</summary>
    internal Lock HotplugLock => _hotplugLock;

    /// <summary>A snapshot of the claimed physical ranges, System RAM first, then in claim order.</summary>
    /// <returns>The resources.</returns>
    public IReadOnlyList<IoResource> Resources()
    {
        lock (_hotplugLock)
        {
            return [.. _resources];
        }
    }

    /// <summary>
    /// Claims a free, section-aligned region of the physical address space for device-private memory, searching
    /// down from the top (<c>request_free_mem_region</c>). Free means neither claimed nor online: device memory
    /// registered without a claim is skipped too.
    /// </summary>
    /// <param name="length">Bytes to claim: a positive multiple of 2 MiB.</param>
    /// <param name="name">The claimant's name, shown in <see cref="Resources"/>.</param>
    /// <returns>The claimed range.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: bad length; <see cref="Errno.ENOMEM"/>: no free region that large.</exception>
    public PhysicalRange RequestFreeRegion(ulong length, string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (length == 0 || length % Section.SubsectionBytes != 0 || length > 1UL << Pfn.MaxPhysicalAddressBits)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"Region length {length} must be a positive multiple of 2 MiB.");
        }

        const ulong align = 1UL << Section.SizeBits;
        lock (_hotplugLock)
        {
            ulong top = 1UL << Pfn.MaxPhysicalAddressBits;
            while (top >= length)
            {
                ulong start = (top - length) & ~(align - 1);
                var candidate = new PhysicalRange(start, length);
                IoResource? conflict = FindOverlapUnsynchronized(candidate);
                if (conflict is not null)
                {
                    top = conflict.Range.Start;
                    continue;
                }

                ulong? online = FirstOnlineAddressUnsynchronized(candidate);
                if (online is null)
                {
                    _resources.Add(new IoResource(name, candidate));
                    return candidate;
                }

                top = online.Value;
            }
        }

        ThrowHelper.ThrowHmm(Errno.ENOMEM, $"No free physical region of {length} bytes.");
        return default;
    }

    /// <summary>Releases a region claimed by <see cref="RequestFreeRegion"/> (<c>release_mem_region</c>).</summary>
    /// <param name="range">The exact range returned by the claim.</param>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: no such claim, or it is System RAM; <see cref="Errno.EBUSY"/>: device pages are still online in it.</exception>
    public void ReleaseRegion(PhysicalRange range)
    {
        lock (_hotplugLock)
        {
            int index = _resources.FindIndex(r => r.Range == range);
            if (index <= 0)
            {
                ThrowHelper.ThrowHmm(Errno.EINVAL, $"No claimed region {range} to release.");
            }

            if (FindPagemapIdUnsynchronized(range) > 0)
            {
                ThrowHelper.ThrowHmm(Errno.EBUSY, $"Region {range} still has device pages online; unmap them first.");
            }

            _resources.RemoveAt(index);
            ForgetDeviceRegionUnsynchronized(range);
        }
    }

    /// <summary>Whether the memmap holds a section for the frame, online or not. Lock-free; lets tests see a leaked section.</summary>
    internal bool HasSection(Pfn pfn) => _sections.Find(pfn) is not null;

    /// <summary>Whether the range overlaps System RAM.</summary>
    internal bool OverlapsRam(PhysicalRange range) => range.Overlaps(new PhysicalRange(0, RamBytes));

    /// <summary>The id of the first pagemap owning a subsection in the range, or 0 if none does.</summary>
    internal int FindPagemapIdUnsynchronized(PhysicalRange range)
    {
        for (ulong address = range.Start; address < range.End; address += Section.SubsectionBytes)
        {
            int id = FindPagemapId(Pfn.FromPhysicalAddress(address));
            if (id > 0)
            {
                return id;
            }
        }

        return 0;
    }

    /// <summary>The id of the pagemap owning the frame, or 0 for RAM, a hole or an absent section. Lock-free.</summary>
    internal int FindPagemapId(Pfn pfn)
    {
        Section? section = _sections.Find(pfn);
        if (section is null)
        {
            return 0;
        }

        int id = Volatile.Read(ref section.SubsectionPagemap[(int)((pfn.Value & Section.PageMask) >> Section.SubsectionPageShift)]);
        return id > 0 ? id : 0;
    }

    /// <summary>Registers a ZONE_DEVICE page owner and returns its id (positive).</summary>
    internal int RegisterZoneDeviceOwnerUnsynchronized(IZoneDevicePageOwner owner)
    {
        IZoneDevicePageOwner?[] owners = _zoneDeviceOwners;
        for (int id = 1; id < owners.Length; id++)
        {
            if (owners[id] is null)
            {
                Volatile.Write(ref owners[id], owner);
                return id;
            }
        }

        var grown = new IZoneDevicePageOwner?[owners.Length * 2];
        owners.CopyTo(grown, 0);
        grown[owners.Length] = owner;
        Volatile.Write(ref _zoneDeviceOwners, grown);
        return owners.Length;
    }

    internal void UnregisterZoneDeviceOwnerUnsynchronized(int id) => Volatile.Write(ref _zoneDeviceOwners[id], null);

    /// <summary>The owner with the given id, or null when the id is free (the pagemap is gone). Lock-free.</summary>
    internal IZoneDevicePageOwner? FindZoneDeviceOwner(int id)
    {
        IZoneDevicePageOwner?[] owners = Volatile.Read(ref _zoneDeviceOwners);
        return (uint)id < (uint)owners.Length ? Volatile.Read(ref owners[id]) : null;
    }

    private IZoneDevicePageOwner ZoneDeviceOwner(int id) =>
        FindZoneDeviceOwner(id) ?? throw new KernelBugException($"Device page owner {id} is gone while one of its pages was referenced.");

    /// <summary>Creates the sections a range needs (<c>add_pages</c>); its subsections stay offline.</summary>
    internal void AddSectionsUnsynchronized(PhysicalRange range)
    {
        for (ulong number = range.Start >> Section.SizeBits; number <= (range.End - 1) >> Section.SizeBits; number++)
        {
            _sections.GetOrAddUnsynchronized(number, out _);
        }
    }

    /// <summary>Removes the sections of a range that no longer have an online subsection.</summary>
    internal void RemoveEmptySectionsUnsynchronized(PhysicalRange range)
    {
        for (ulong number = range.Start >> Section.SizeBits; number <= (range.End - 1) >> Section.SizeBits; number++)
        {
            Section? section = _sections.Find(new Pfn(number << Section.PageShift));
            if (section is { OnlineSubsections: 0 })
            {
                _sections.RemoveUnsynchronized(number);
            }
        }
    }

    /// <summary>
    /// Initialises the struct pages of a device range (<c>memmap_init_zone_device</c>): ZONE_DEVICE, owned by
    /// <paramref name="pagemapId"/>, refcount 0 (free), no data yet.
    /// </summary>
    internal void InitDevicePagesUnsynchronized(PhysicalRange range, int pagemapId)
    {
        for (ulong address = range.Start; address < range.End; address += Section.SubsectionBytes)
        {
            Section section = _sections.Find(Pfn.FromPhysicalAddress(address))!;
            int first = (int)(Pfn.FromPhysicalAddress(address).Value & Section.PageMask);
            Span<PageFrame> frames = section.Frames.AsSpan(first, Section.PagesPerSubsection);
            frames.Clear();
            foreach (ref PageFrame frame in frames)
            {
                frame._flags = (ulong)PageFlags.ZoneDevice;
                frame._pagemapId = pagemapId;
            }
        }
    }

    /// <summary>Publishes the range's subsections as owned by the pagemap: from now on lookups find it.</summary>
    internal void PublishDeviceSubsectionsUnsynchronized(PhysicalRange range, int pagemapId)
    {
        for (ulong address = range.Start; address < range.End; address += Section.SubsectionBytes)
        {
            SetSubsectionUnsynchronized(address, pagemapId);
        }
    }

    /// <summary>Takes the range's subsections offline and drops their frames and data (<c>pgmap_array_delete</c> + <c>__remove_pages</c>).</summary>
    internal void OfflineSubsectionsUnsynchronized(PhysicalRange range)
    {
        for (ulong address = range.Start; address < range.End; address += Section.SubsectionBytes)
        {
            Pfn pfn = Pfn.FromPhysicalAddress(address);
            Section? section = _sections.Find(pfn);
            if (section is null)
            {
                continue;
            }

            int subsection = (int)((pfn.Value & Section.PageMask) >> Section.SubsectionPageShift);
            if (section.SubsectionPagemap[subsection] != OfflineSubsection)
            {
                Volatile.Write(ref section.SubsectionPagemap[subsection], OfflineSubsection);
                section.OnlineSubsections--;
            }

            section.Frames.AsSpan(subsection * Section.PagesPerSubsection, Section.PagesPerSubsection).Clear();
            section.Data[subsection] = null;
        }
    }

    private void OnlineSubsectionsUnsynchronized(PhysicalRange range)
    {
        AddSectionsUnsynchronized(range);
        for (ulong address = range.Start; address < range.End; address += Section.SubsectionBytes)
        {
            SetSubsectionUnsynchronized(address, RamSubsection);
        }
    }

    private void SetSubsectionUnsynchronized(ulong address, int state)
    {
        Pfn pfn = Pfn.FromPhysicalAddress(address);
        Section section = _sections.Find(pfn)!;
        int subsection = (int)((pfn.Value & Section.PageMask) >> Section.SubsectionPageShift);
        if (section.SubsectionPagemap[subsection] == OfflineSubsection)
        {
            section.OnlineSubsections++;
        }

        Volatile.Write(ref section.SubsectionPagemap[subsection], state);
    }

    /// <summary>The lowest address of the range whose subsection is online (RAM or device pages), or null if none is.</summary>
    private ulong? FirstOnlineAddressUnsynchronized(PhysicalRange range)
    {
        const ulong sectionBytes = 1UL << Section.SizeBits;
        ulong address = range.Start;
        while (address < range.End)
        {
            Pfn pfn = Pfn.FromPhysicalAddress(address);
            Section? section = _sections.Find(pfn);
            if (section is null)
            {
                address = (address | (sectionBytes - 1)) + 1;
                continue;
            }

            if (IsSubsectionOnline(section, pfn))
            {
                return address;
            }

            address += Section.SubsectionBytes;
        }

        return null;
    }

    private IoResource? FindOverlapUnsynchronized(PhysicalRange range)
    {
        IoResource? highest = null;
        foreach (IoResource resource in _resources)
        {
            if (resource.Range.Overlaps(range) && (highest is null || resource.Range.Start > highest.Range.Start))
            {
                highest = resource;
            }
        }

        return highest;
    }
}
