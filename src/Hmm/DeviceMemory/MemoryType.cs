namespace Hmm;

/// <summary>The kind of device memory a pagemap describes (<c>enum memory_type</c>; same values).</summary>
public enum MemoryType
{
    /// <summary>
    /// <c>MEMORY_DEVICE_PRIVATE</c>: device memory the CPU cannot address. A CPU access faults and the pagemap's
    /// migrate-to-RAM callback moves the page back. Needs page-free, migrate-to-RAM and an owner.
    /// </summary>
    DevicePrivate = 1,

    /// <summary>
    /// <c>MEMORY_DEVICE_COHERENT</c>: device memory the CPU can access coherently (CXL, CAPI). Never pinned, so it
    /// can always be evicted. Needs page-free and an owner.
    /// </summary>
    DeviceCoherent = 2,

    /// <summary><c>MEMORY_DEVICE_GENERIC</c>: pinnable device memory (device-dax). Each page holds a pagemap reference for the mapping's lifetime.</summary>
    Generic = 4,

    /// <summary><c>MEMORY_DEVICE_PCI_P2PDMA</c>: a PCI BAR used for peer-to-peer DMA. Each page holds a pagemap reference for the mapping's lifetime.</summary>
    PciP2PDma = 5,
}
