namespace Hmm;

/// <summary>
/// What a <see cref="TraceEvent"/> records. The numeric values are part of the trace file format
/// (docs/trace-format.md): a value is never reused or renumbered; a new kind takes the next number and a new
/// format version.
/// </summary>
public enum TraceEventKind : ushort
{
    /// <summary>Not a kind: a record with kind 0 is invalid.</summary>
    None = 0,

    /// <summary>A CPU page fault (<c>handle_mm_fault</c>): address, fault flags, result.</summary>
    CpuFault = 1,

    /// <summary>A device page fault entering the device's fault buffer: address, access.</summary>
    DeviceFault = 2,

    /// <summary>A batch of device faults serviced together: faults delivered, duplicates merged, start and end.</summary>
    FaultBatch = 3,

    /// <summary>One <c>hmm_range_fault</c> call: range start, pages, retries, result.</summary>
    RangeFault = 4,

    /// <summary>An mmu notifier invalidation: range, event, interval notifiers visited.</summary>
    Invalidate = 5,

    /// <summary><c>migrate_vma_setup</c>: range start, pages in the range, pages selected.</summary>
    MigrateSetup = 6,

    /// <summary><c>migrate_vma_pages</c>: range start, pages, pages still migrating.</summary>
    MigratePages = 7,

    /// <summary><c>migrate_vma_finalize</c>: range start, pages moved, pages declined.</summary>
    MigrateFinalize = 8,

    /// <summary>A copy-engine transfer: bytes, direction, engine, start and end on the virtual clock.</summary>
    Copy = 9,

    /// <summary>Device memory evicted back to system memory: first device page frame, pages.</summary>
    Evict = 10,

    /// <summary>A device TLB invalidation: range start and end.</summary>
    TlbInvalidate = 11,

    /// <summary>Device memory allocated: first device page frame, pages, device pages in use afterwards.</summary>
    DeviceAlloc = 12,

    /// <summary>Device memory freed: first device page frame, pages, device pages in use afterwards.</summary>
    DeviceFree = 13,

    /// <summary>A pagemap lifetime change (kill, idle, removed): pagemap id, pages still referenced.</summary>
    PagemapLifetime = 14,

    /// <summary>One field of the configuration a recorded run used (for replay): field number, value.</summary>
    RunConfiguration = 15,

    /// <summary>A phase of a recorded run begins: phase number, extent.</summary>
    Phase = 16,

    /// <summary>A kernel launch on a device of a recorded run: first row, end row, extent.</summary>
    KernelLaunch = 17,

    /// <summary>One access of a work item a device's warp was given: address, bytes, access, item (the replayable GPU input).</summary>
    DeviceAccess = 18,

    /// <summary>One access of a recorded run's CPU: address, bytes, read or write (the replayable CPU input).</summary>
    CpuAccess = 19,
}
