namespace Hmm.Devices;

/// <summary>
/// A device's own memory. Its pages are core struct pages in device pagemaps (device-private or device-coherent)
/// that the device registers through <see cref="Devm"/> on its <see cref="ManagedDevice"/>, with
/// <see cref="Owner"/> as the pagemap owner, so every device page has real metadata and, unless the machine is
/// metadata-only, real data. A page handed out by <see cref="Allocate"/> comes back to the free pool when its
/// last reference is put (<c>folio_free</c>).
/// </summary>
/// <remarks>
/// <para>Error model: <see cref="Allocate"/> returns fewer pages than asked when the memory is full or an
/// injected failure is pending; it never throws for that. Invalid arguments give <see cref="HmmException"/>.</para>
/// <para>Concurrency model: every member is thread-safe.</para>
/// </remarks>
public interface IDeviceMemory
{
    /// <summary>The kind of memory: <see cref="MemoryType.DevicePrivate"/> or <see cref="MemoryType.DeviceCoherent"/>.</summary>
    MemoryType Type { get; }

    /// <summary>
    /// The pagemap owner of this device's pages (<c>pgmap-&gt;owner</c>): pass it as <c>dev_private_owner</c> to
    /// <see cref="HmmRange"/> and as <c>pgmap_owner</c> to <see cref="Migrate"/> to select this device's pages.
    /// </summary>
    object Owner { get; }

    /// <summary>Total device memory, in pages.</summary>
    long CapacityPages { get; }

    /// <summary>Pages free to allocate now.</summary>
    long FreePages { get; }

    /// <summary>Pages per chunk, the unit in which the device hands out contiguous memory and a driver evicts (default 512: 2 MiB).</summary>
    int ChunkPages { get; }

    /// <summary>The pagemaps registered so far (the device registers them as it needs them).</summary>
    IReadOnlyList<DevPagemap> Pagemaps { get; }

    /// <summary>
    /// The driver that handles CPU faults on this device's private pages (<c>migrate_to_ram</c>) and hears about
    /// freed pages. Set once, before the first allocation.
    /// </summary>
    /// <param name="client">The driver.</param>
    /// <exception cref="HmmException">EBUSY when a client is already attached.</exception>
    void Attach(IDeviceMemoryClient client);

    /// <summary>
    /// Allocates device pages as migration destinations (<c>zone_device_page_init</c>): each comes back with
    /// refcount 1 and locked. Pages come from as few chunks as possible, in ascending PFN order within a chunk.
    /// </summary>
    /// <param name="pages">Filled from index 0.</param>
    /// <returns>How many pages were allocated: fewer than asked when the memory is full or an allocation failure was injected.</returns>
    int Allocate(Span<Pfn> pages);

    /// <summary>Whether <paramref name="page"/> is one of this device's pages.</summary>
    /// <param name="page">Any page frame.</param>
    /// <returns>True for a page of one of <see cref="Pagemaps"/>.</returns>
    bool Contains(Pfn page);

    /// <summary>The chunk that holds one of this device's pages, 0 to <c>CapacityPages / ChunkPages - 1</c>.</summary>
    /// <param name="page">A page of this device.</param>
    /// <returns>The chunk index.</returns>
    /// <exception cref="HmmException">EINVAL when the page is not this device's.</exception>
    int ChunkOf(Pfn page);
}
