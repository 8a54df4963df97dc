namespace Hmm.Devices;

/// <summary>One valid device page table entry: the page frame it points at and its permissions.</summary>
/// <param name="Page">A System RAM page, a page of this device's memory, or another device's page.</param>
/// <param name="Flags">Its permissions, never <see cref="DevicePteFlags.None"/>.</param>
public readonly record struct DevicePte(Pfn Page, DevicePteFlags Flags);
