namespace Hmm.Devices;

/// <summary>
/// A device address space: the device page table of one GPU VM, keyed by device virtual page. It holds no page
/// references (like the kernel test driver's table): the driver's interval notifier must unmap entries before
/// the pages they point at can go. Changing entries does not flush the device's TLB; a driver that removes or
/// downgrades entries calls <see cref="InvalidateTlb"/>, which the device charges on its clock.
/// </summary>
/// <remarks>
/// <para>Error model: a misaligned address, a zero or wrapping length, or a count that overflows the table give
/// <see cref="HmmException"/> EINVAL, and change nothing.</para>
/// <para>Concurrency model: every member is thread-safe; each call is atomic with respect to the others.</para>
/// </remarks>
public interface IDeviceAddressSpace
{
    /// <summary>The address space's name.</summary>
    string Name { get; }

    /// <summary>The device this address space belongs to.</summary>
    IDeviceBackend Device { get; }

    /// <summary>How many pages have a valid entry.</summary>
    long MappedPages { get; }

    /// <summary>
    /// Maps <paramref name="pages"/>.Length consecutive device virtual pages from <paramref name="address"/>, each
    /// to the page frame at the same index, with <paramref name="flags"/>; replaces existing entries.
    /// </summary>
    /// <param name="address">Page-aligned device virtual address of the first page.</param>
    /// <param name="pages">
    /// Page frames of this machine; a frame that is not present, or a reserved read-only frame (the zero page)
    /// mapped with <see cref="DevicePteFlags.Write"/> or <see cref="DevicePteFlags.Atomic"/>, gives EINVAL.
    /// </param>
    /// <param name="flags">Permissions; <see cref="DevicePteFlags.None"/> gives EINVAL.</param>
    /// <exception cref="HmmException">EINVAL, see the type's remarks; nothing is mapped.</exception>
    void Map(ulong address, ReadOnlySpan<Pfn> pages, DevicePteFlags flags);

    /// <summary>Removes every entry in [<paramref name="address"/>, <paramref name="address"/> + <paramref name="length"/>).</summary>
    /// <param name="address">Page-aligned start.</param>
    /// <param name="length">Page-aligned length, at least one page.</param>
    /// <returns>How many valid entries were removed.</returns>
    /// <exception cref="HmmException">EINVAL, see the type's remarks.</exception>
    long Unmap(ulong address, ulong length);

    /// <summary>Sets the permissions of every valid entry in [<paramref name="address"/>, <paramref name="address"/> + <paramref name="length"/>).</summary>
    /// <param name="address">Page-aligned start.</param>
    /// <param name="length">Page-aligned length, at least one page.</param>
    /// <param name="flags">The new permissions; <see cref="DevicePteFlags.None"/> gives EINVAL (use <see cref="Unmap"/>).</param>
    /// <returns>How many entries changed.</returns>
    /// <exception cref="HmmException">EINVAL, see the type's remarks.</exception>
    long Protect(ulong address, ulong length, DevicePteFlags flags);

    /// <summary>Reads the entry of the page holding <paramref name="address"/>.</summary>
    /// <param name="address">Any device virtual address.</param>
    /// <param name="entry">The entry, when valid.</param>
    /// <returns>Whether the page has a valid entry.</returns>
    bool TryLookup(ulong address, out DevicePte entry);

    /// <summary>
    /// Flushes the device's TLB for [<paramref name="address"/>, <paramref name="address"/> + <paramref name="length"/>):
    /// after it returns, no engine uses an entry removed or downgraded before the call. Charged on the device's clock.
    /// </summary>
    /// <param name="address">Page-aligned start.</param>
    /// <param name="length">Page-aligned length, at least one page.</param>
    /// <exception cref="HmmException">EINVAL, see the type's remarks.</exception>
    void InvalidateTlb(ulong address, ulong length);
}
