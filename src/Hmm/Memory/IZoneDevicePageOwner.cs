namespace Hmm;

/// <summary>
/// What the memory layer calls when the last reference to a <c>ZONE_DEVICE</c> page is put: the device layer's
/// <c>free_zone_device_folio</c>. Keeps the dependency arrow pointing down: Memory knows this interface, the
/// DeviceMemory layer implements it.
/// </summary>
internal interface IZoneDevicePageOwner
{
    /// <summary>Called once the page's refcount has dropped to zero, on the thread that put it.</summary>
    void FreeZoneDevicePage(Pfn pfn);
}
