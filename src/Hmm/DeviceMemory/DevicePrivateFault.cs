namespace Hmm;

/// <summary>
/// A CPU access that hit a device-private page: what <see cref="IDevPagemapOps.MigrateToRam"/> receives (the
/// fields of the kernel's <c>struct vm_fault</c> that a driver's <c>migrate_to_ram</c> reads).
/// </summary>
/// <param name="Pagemap">The pagemap that owns <paramref name="Page"/>.</param>
/// <param name="Page">The device-private page the CPU touched (<c>vmf->page</c>), locked and referenced by the fault path.</param>
/// <param name="Address">The faulting virtual address, page aligned.</param>
/// <param name="IsWrite">Whether the access was a write.</param>
/// <param name="AddressSpace">
/// The faulting process's address space (<c>vmf->vma->vm_mm</c>): an <c>Hmm.AddressSpace</c> object, typed
/// loosely here because this layer sits below the address-space layer.
/// </param>
public readonly record struct DevicePrivateFault(DevPagemap Pagemap, Pfn Page, ulong Address, bool IsWrite, object AddressSpace);
