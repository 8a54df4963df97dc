using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// One GPU VM of the simulated GPU (<see cref="IDeviceAddressSpace"/>): its device page table and the lock that
/// makes each call, and each device access through it, atomic.
/// </summary>
/// <remarks>
/// Concurrency model: <see cref="Gate"/> guards the table. It is held by every member and by
/// <see cref="SimulatedGpu.Access"/> for the whole access (or by a <see cref="SimAccessRun"/> for its whole run), so
/// <see cref="InvalidateTlb"/>, which takes it, returns only after every access that could have used an old entry
/// has finished. Lock order: the gate, then the fault buffer's
/// lock (an access raising a fault). No core call that takes a lock is made under the gate.
/// </remarks>
internal sealed class SimAddressSpace : IDeviceAddressSpace
{
    private readonly SimulatedGpu _gpu;

    internal SimAddressSpace(SimulatedGpu gpu, string name)
    {
        _gpu = gpu;
        Name = name;
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public IDeviceBackend Device => _gpu;

    /// <inheritdoc/>
    public long MappedPages
    {
        get
        {
            using (Gate.Enter())
            {
                return Table.Count;
            }
        }
    }

    /// <summary>
    /// Guards <see cref="Table"/>; held by every member and by a whole device access through this space. Taken before
    /// the fault buffer's lock; no core call that takes a lock is made under it.
    /// </summary>
    internal SpinGate Gate { get; } = new();

    /// <summary>The counters of the accesses through this space; written only under <see cref="Gate"/>.</summary>
    internal SimAccessCounters AccessCounters { get; } = new();

    /// <summary>The device page table; only under <see cref="Gate"/>.</summary>
    internal DevicePageTable Table { get; } = new();

    /// <inheritdoc/>
    public void Map(ulong address, ReadOnlySpan<Pfn> pages, DevicePteFlags flags)
    {
        ValidateRange(address, (ulong)pages.Length << PageSize.Shift, pages.IsEmpty);
        ValidateFlags(flags);
        PhysicalMemory memory = _gpu.Memory;
        bool writable = (flags & (DevicePteFlags.Write | DevicePteFlags.Atomic)) != 0;
        foreach (Pfn pfn in pages)
        {
            if (!memory.IsPresent(pfn))
            {
                throw new HmmException(Errno.EINVAL, $"{pfn} is not a present page frame of this machine.");
            }

            if (writable && (memory.Page(pfn).Flags & PageFlags.Reserved) != 0)
            {
                throw new HmmException(Errno.EINVAL, $"{pfn} is a reserved, read-only page; it cannot be mapped {flags}.");
            }
        }

        ulong vpn = address >> PageSize.Shift;
        using (Gate.Enter())
        {
            for (int i = 0; i < pages.Length; i++)
            {
                Table.Set(vpn + (ulong)i, DevicePageTable.Encode(pages[i], flags));
            }
        }
    }

    /// <inheritdoc/>
    public long Unmap(ulong address, ulong length)
    {
        ValidateRange(address, length, length == 0);
        using (Gate.Enter())
        {
            return Table.Clear(address >> PageSize.Shift, length >> PageSize.Shift);
        }
    }

    /// <inheritdoc/>
    public long Protect(ulong address, ulong length, DevicePteFlags flags)
    {
        ValidateRange(address, length, length == 0);
        ValidateFlags(flags);
        using (Gate.Enter())
        {
            return Table.Protect(address >> PageSize.Shift, length >> PageSize.Shift, flags);
        }
    }

    /// <inheritdoc/>
    public bool TryLookup(ulong address, out DevicePte entry)
    {
        ulong raw;
        using (Gate.Enter())
        {
            raw = Table.Get(address >> PageSize.Shift);
        }

        entry = raw == 0 ? default : DevicePageTable.Decode(raw);
        return raw != 0;
    }

    /// <inheritdoc/>
    public void InvalidateTlb(ulong address, ulong length)
    {
        ValidateRange(address, length, length == 0);

        // Taking the gate waits for every access in flight, which may still be using an old entry.
        using (Gate.Enter())
        {
            Interlocked.Increment(ref _gpu.Counters.TlbInvalidations);
        }

        long now = _gpu.VirtualClock.Advance(_gpu.Costs.TlbInvalidateLatency);
        TraceEmitter trace = _gpu.Memory.Trace;
        if (trace.IsEnabled)
        {
            trace.Emit(TraceEvent.TlbInvalidate(_gpu.TraceDevice, address, address + length, now - _gpu.Costs.TlbInvalidateLatency));
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"{_gpu.Name}/{Name}";

    private static void ValidateRange(ulong address, ulong length, bool empty)
    {
        if (empty || !PageSize.IsAligned(address) || !PageSize.IsAligned(length) || length == 0
            || length - 1 > ulong.MaxValue - address)
        {
            throw new HmmException(Errno.EINVAL, $"Range 0x{address:x}+0x{length:x} must be page-aligned, non-empty and must not wrap.");
        }
    }

    private static void ValidateFlags(DevicePteFlags flags)
    {
        if (flags == DevicePteFlags.None || ((ulong)flags & ~DevicePageTable.FlagMask) != 0)
        {
            throw new HmmException(Errno.EINVAL, $"Device page table flags {flags} are not valid permissions.");
        }
    }
}
