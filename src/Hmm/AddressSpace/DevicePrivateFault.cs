namespace Hmm;

/// <summary>
/// A CPU access that hit a device-private page: what <see cref="IDevPagemapOps.MigrateToRam"/> receives (the
/// fields of the kernel's <c>struct vm_fault</c> that a driver's <c>migrate_to_ram</c> reads). Hand
/// <see cref="Vma"/>, <see cref="Address"/> and <see cref="Page"/> straight to <see cref="MigrateVma"/>
/// (<c>vma</c>, <c>start</c>, <c>fault_page</c>).
/// </summary>
/// <remarks>
/// It lives with the address space because it carries one: the fault is raised by <see cref="Mm.HandleMmFault"/>,
/// and the device-memory layer only names it in its callback's signature, as <c>dev_pagemap_ops</c> names
/// <c>struct vm_fault</c> in the kernel.
/// </remarks>
/// <param name="Pagemap">The pagemap that owns <paramref name="Page"/>.</param>
/// <param name="Page">The device-private page the CPU touched (<c>vmf->page</c>), locked and referenced by the fault path.</param>
/// <param name="Address">The faulting virtual address, page aligned (<c>vmf->address</c>).</param>
/// <param name="IsWrite">Whether the access was a write (<c>FAULT_FLAG_WRITE</c>).</param>
/// <param name="Vma">The faulting area (<c>vmf->vma</c>); the caller of the callback holds its mmap lock.</param>
public readonly record struct DevicePrivateFault(DevPagemap Pagemap, Pfn Page, ulong Address, bool IsWrite, Vma Vma)
{
    /// <summary>The faulting process's address space (<c>vmf->vma->vm_mm</c>).</summary>
    public Mm Mm => Vma.Mm;
}
