namespace Hmm.Devices;

/// <summary>
/// A device as a driver sees it: device memory, a copy engine, device address spaces (page tables), a fault
/// source and a virtual clock. The simulated GPU (<c>Hmm.SimGpu</c>) is one implementation; a user with another
/// device model implements this interface, and the drivers in <c>Hmm.Drivers</c> run on it unchanged.
/// </summary>
/// <remarks>
/// <para>Error model: invalid arguments throw <see cref="HmmException"/> with the kernel's errno (EINVAL for a
/// foreign address space or machine); device-side failures a driver must handle (no free device page, a failed
/// copy) are returned, never thrown.</para>
/// <para>Concurrency model: every member may be called from any thread. Accesses and copies on one device are
/// ordered on its virtual clock by the order in which they are issued.</para>
/// </remarks>
public interface IDeviceBackend
{
    /// <summary>The device's name, as in its <see cref="ManagedDevice"/>.</summary>
    string Name { get; }

    /// <summary>The machine the device is attached to (its System RAM and page frames).</summary>
    PhysicalMemory Memory { get; }

    /// <summary>The device's managed lifetime (<c>struct device</c>): its pagemaps are released at unbind.</summary>
    ManagedDevice Device { get; }

    /// <summary>The device's own memory, whose pages are core struct pages in device pagemaps.</summary>
    IDeviceMemory LocalMemory { get; }

    /// <summary>The engine that copies pages between System RAM and device memory, and between devices.</summary>
    ICopyEngine CopyEngine { get; }

    /// <summary>Where the device's engines report faults, in batches.</summary>
    IFaultSource Faults { get; }

    /// <summary>The virtual clock on which the device's work completes (shared by every device of one simulation).</summary>
    IVirtualClock Clock { get; }

    /// <summary>Costs the device charges and a driver charges for host-side work, in virtual nanoseconds.</summary>
    DeviceTiming Timing { get; }

    /// <summary>
    /// Creates a device address space (a GPU VM): an empty device page table keyed by device virtual page.
    /// Drivers create one per mirrored process.
    /// </summary>
    /// <param name="name">A name for diagnostics.</param>
    /// <returns>The new address space, owned by this device.</returns>
    IDeviceAddressSpace CreateAddressSpace(string name);

    /// <summary>
    /// One engine accesses device virtual memory <paramref name="address"/>..+<paramref name="length"/> through
    /// <paramref name="space"/>: page by page, every page mapped with the permission <paramref name="kind"/> needs
    /// is accessed (bytes move between <paramref name="data"/> and the mapped page when data is given, and the
    /// access is charged on the clock); at the first page that is not, the access stops and, when
    /// <paramref name="replayable"/>, a fault record for that page goes into <see cref="Faults"/>.
    /// </summary>
    /// <param name="space">An address space of this device; another device's gives EINVAL.</param>
    /// <param name="address">The first device virtual byte.</param>
    /// <param name="length">Bytes to access (at least 1). With empty <paramref name="data"/>, a timing-only access.</param>
    /// <param name="kind">Read, write or atomic.</param>
    /// <param name="data">Empty, or exactly <paramref name="length"/> bytes: read into, or written from.</param>
    /// <param name="engine">The engine that accesses (reported in the fault record), 0 or more.</param>
    /// <param name="replayable">Whether a missing page raises a replayable fault in <see cref="Faults"/>.</param>
    /// <returns>How far the access got, and the page that stopped it.</returns>
    /// <exception cref="HmmException">EINVAL: a foreign address space, a zero length, a wrap, a negative engine, or data of the wrong length.</exception>
    DeviceAccessResult Access(IDeviceAddressSpace space, ulong address, ulong length, DeviceAccessKind kind, Span<byte> data, int engine, bool replayable);
}
