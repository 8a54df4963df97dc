using Hmm;

namespace DriverGuide;

/// <summary>What <see cref="DriverGuideProgram.Run"/> saw, step by step.</summary>
public sealed record DriverGuideResult
{
    /// <summary>What the first mirror of the whole buffer returned.</summary>
    public Errno Mirrored { get; init; }

    /// <summary>Entries the first mirror put in the device page table (valid pages).</summary>
    public int PagesMirrored { get; init; }

    /// <summary>Of those, the entries with <see cref="HmmPfn.Write"/>.</summary>
    public int WritablePages { get; init; }

    /// <summary>Of those, the entries that map the shared zero page.</summary>
    public int ZeroPageEntries { get; init; }

    /// <summary>What the mirror for writing returned.</summary>
    public Errno MirroredForWrite { get; init; }

    /// <summary>Writable entries after the mirror for writing.</summary>
    public int WritablePagesAfterWriteMirror { get; init; }

    /// <summary>Invalidations caused by the write faults of the mirror for writing (the zero pages replaced).</summary>
    public int InvalidationsByFaults { get; init; }

    /// <summary>Times the mirror loop started again by then (EBUSY, or ReadRetry true).</summary>
    public int Retries { get; init; }

    /// <summary>What the mirror after mprotect returned.</summary>
    public Errno Remirrored { get; init; }

    /// <summary>Writable entries after mprotect made the buffer read-only and it was mirrored again.</summary>
    public int WritablePagesAfterMprotect { get; init; }

    /// <summary>Device page-table entries left right after mprotect, before mirroring again.</summary>
    public int DeviceEntriesAfterMprotect { get; init; }

    /// <summary>Invalidations the driver's callback handled in all.</summary>
    public int Invalidations { get; init; }

    /// <summary>What mirroring the unmapped buffer returned.</summary>
    public Errno AfterUnmap { get; init; }

    /// <summary>What the driver's ioctl returned for an unaligned range (a negative errno).</summary>
    public int UnalignedIoctl { get; init; }

    /// <summary>Device pages returned through <see cref="IDevPagemapOps.PageFree"/>.</summary>
    public int DevicePagesFreed { get; init; }

    /// <summary>Device pages on the driver's free list at the end.</summary>
    public int DeviceFreePages { get; init; }

    /// <summary>Whether the device is still bound after the teardown (it must not be).</summary>
    public bool DeviceBound { get; init; }

    /// <summary>The pagemap's state after the teardown.</summary>
    public DevPagemapState PagemapState { get; init; }

    /// <summary>Whether the device range still has struct pages after the teardown (it must not).</summary>
    public bool DeviceRangePresent { get; init; }

    /// <summary>Free System RAM pages once the device memory was registered, before the process existed.</summary>
    public ulong FreeRamPagesAtStart { get; init; }

    /// <summary>Free System RAM pages after the process exited and the device unbound.</summary>
    public ulong FreeRamPagesAtEnd { get; init; }

    /// <summary>The device unbound completely and no RAM leaked.</summary>
    public bool IsClean =>
        !DeviceBound && PagemapState == DevPagemapState.Removed && !DeviceRangePresent && FreeRamPagesAtEnd == FreeRamPagesAtStart;
}
