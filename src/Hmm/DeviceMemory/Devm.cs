
namespace Hmm;

/// <summary>Device-managed forms of the device-memory calls (<c>devm_memremap_pages</c> and friends).</summary>
public static class Devm
{
    /// <summary>
    /// Claims a free physical region for device-private memory and releases it when the device unbinds
    /// (<c>devm_request_free_mem_region</c>).
    /// </summary>
    /// <param name="device">The owning device.</param>
    /// <param name="length">Bytes: a positive multiple of 2 MiB.</param>
    /// <returns>The claimed range.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="device"/> is null.</exception>
    /// <exception cref="HmmException">
    /// <see cref="Errno.ENODEV"/>: the device is unbinding (checked first; nothing is claimed). Otherwise as
    /// <see cref="PhysicalMemory.RequestFreeRegion"/>, or as <see cref="ManagedDevice.AddActionOrReset"/> (the region is released again).
    /// </exception>
    public static PhysicalRange RequestFreeRegion(ManagedDevice device, ulong length)
    {
        ArgumentNullException.ThrowIfNull(device);
        device.ThrowIfUnbinding();
        PhysicalRange range = device.Memory.RequestFreeRegion(length, device.Name);
        device.Memory.RecordDeviceRegion(range, device);
        device.AddOrReset(
            () =>
            {
                device.Memory.ReleaseRegion(range);
                return Task.CompletedTask;
            },
            key: null);
        return range;
    }

    /// <summary>
    /// Registers device memory whose teardown runs when the device unbinds (<c>devm_memremap_pages</c>). If the
    /// release action cannot be attached, the pagemap is torn down at once and the error is thrown, so nothing
    /// stays registered.
    /// </summary>
    /// <param name="device">The owning device.</param>
    /// <param name="options">As for <see cref="Memremap.Map"/>.</param>
    /// <returns>The live pagemap.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="HmmException">
    /// <see cref="Errno.ENODEV"/>: the device is unbinding (checked first; nothing is registered). Otherwise as
    /// <see cref="Memremap.Map"/> and <see cref="ManagedDevice.AddActionOrReset"/>; nothing stays registered.
    /// </exception>
    public static DevPagemap Map(ManagedDevice device, DevPagemapOptions options)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        device.ThrowIfUnbinding();
        DevPagemap pagemap = Memremap.Map(device.Memory, options);
        pagemap.Device = device;
        pagemap.TraceDevice = device.TraceId;
        device.TrackPagemap(pagemap);
        device.AddOrReset(() => pagemap.StartTeardown(), key: pagemap);
        return pagemap;
    }

    /// <summary>
    /// Tears a device-managed pagemap down before the device unbinds (<c>devm_memunmap_pages</c>): detaches its
    /// release action and runs it now, so the unbind will not run it again.
    /// </summary>
    /// <param name="device">The owning device.</param>
    /// <param name="pagemap">A pagemap registered with <see cref="Map"/> on this device and not yet released.</param>
    /// <returns>A task that completes when the pagemap is removed.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the pagemap belongs to another machine than the device. Nothing changes.</exception>
    /// <exception cref="KernelBugException">
    /// Thrown at once: the device has no release action for the pagemap (not registered through this device,
    /// already released, or the device is unbinding). The kernel WARNs on <c>devm_release_action</c> of an unknown
    /// resource. Nothing changes.
    /// </exception>
    public static Task UnmapAsync(ManagedDevice device, DevPagemap pagemap)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(pagemap);
        if (!ReferenceEquals(pagemap.Memory, device.Memory))
        {
            ThrowHelper.ThrowForeignMachine($"Pagemap {pagemap.Id} '{pagemap.Name}'", $"device '{device.Name}'", device.Memory, pagemap.Memory);
        }

        return device.ReleaseEarly(pagemap);
    }
}
