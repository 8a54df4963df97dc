using System.Runtime.CompilerServices;

namespace Hmm;

// Device numbering for trace events (TraceEvent.Device): each ManagedDevice of a machine gets the next number in
// creation order, and a pagemap carries the number of the device whose memory it maps, so that core events
// (migrations, pagemap lifetime) name the same device as the device's and its driver's own events. The lookups
// here run only when tracing is on.
public sealed partial class PhysicalMemory
{
    // Under _hotplugLock: the regions claimed through Devm.RequestFreeRegion, with the device that claimed them.
    private readonly List<(PhysicalRange Range, ManagedDevice Device)> _deviceRegions = [];
    private int _devicesCreated;

    /// <summary>The next device number (creation order, from 0; wraps after 65536 devices on one machine).</summary>
    internal ushort NextTraceDevice() => (ushort)(Interlocked.Increment(ref _devicesCreated) - 1);

    /// <summary>Records that <paramref name="device"/> claimed <paramref name="range"/>: pagemaps mapped into it are that device's.</summary>
    internal void RecordDeviceRegion(PhysicalRange range, ManagedDevice device)
    {
        lock (_hotplugLock)
        {
            _deviceRegions.Add((range, device));
        }
    }

    /// <summary>Forgets a device region released again. Caller holds the hotplug lock.</summary>
    private void ForgetDeviceRegionUnsynchronized(PhysicalRange range)
    {
        int index = _deviceRegions.FindIndex(r => r.Range == range);
        if (index >= 0)
        {
            _deviceRegions.RemoveAt(index);
        }
    }

    /// <summary>The number of the device that claimed the region holding <paramref name="range"/>, or 0. Caller holds the hotplug lock.</summary>
    internal ushort TraceDeviceOfRegionUnsynchronized(PhysicalRange range)
    {
        foreach ((PhysicalRange region, ManagedDevice device) in _deviceRegions)
        {
            if (region.Start <= range.Start && range.End <= region.End)
            {
                return device.TraceId;
            }
        }

        return 0;
    }

    /// <summary>The device number of the pagemap holding <paramref name="pfn"/>, or null when the frame is System RAM (or no device page).</summary>
    internal ushort? TraceDeviceOfPage(Pfn pfn)
    {
        ref PageFrame frame = ref FrameIfPresent(pfn);
        if (Unsafe.IsNullRef(ref frame) || !frame.IsZoneDevice)
        {
            return null;
        }

        return FindZoneDeviceOwner(frame.PagemapId) is DevPagemap pagemap ? pagemap.TraceDevice : null;
    }

    /// <summary>The device number of a live pagemap whose owner is <paramref name="owner"/>, or 0 when none is. Lock-free.</summary>
    internal ushort TraceDeviceOfOwner(object? owner)
    {
        if (owner is null)
        {
            return 0;
        }

        IZoneDevicePageOwner?[] owners = Volatile.Read(ref _zoneDeviceOwners);
        for (int id = 1; id < owners.Length; id++)
        {
            if (Volatile.Read(ref owners[id]) is DevPagemap pagemap && ReferenceEquals(pagemap.Owner, owner))
            {
                return pagemap.TraceDevice;
            }
        }

        return 0;
    }
}
