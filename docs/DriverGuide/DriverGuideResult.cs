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

    /// <summary>Entries the migration to the device collected (<c>cpages</c>): the 16 pages of the second buffer, holes included.</summary>
    public ulong MigrationCollected { get; init; }

    /// <summary>Pages that moved to the device (still marked migrating after <see cref="Migrate.VmaPages"/>).</summary>
    public int PagesMigrated { get; init; }

    /// <summary>Pages of the second buffer whose CPU entry was device-private right after the migration.</summary>
    public int PagesOnDevice { get; init; }

    /// <summary><see cref="IDevPagemapOps.MigrateToRam"/> calls after the CPU read one page and wrote another.</summary>
    public int MigrateToRamCalls { get; init; }

    /// <summary>Whether the page the CPU read back held the bytes written before it moved to the device.</summary>
    public bool FaultedPageIntact { get; init; }

    /// <summary>Device-private CPU entries left after those two CPU accesses.</summary>
    public int PagesOnDeviceAfterFaults { get; init; }

    /// <summary>Device page-table entries of the second buffer after those two CPU accesses.</summary>
    public int DeviceEntriesAfterFaults { get; init; }

    /// <summary>Device pages the unbind's eviction moved back to RAM.</summary>
    public int PagesEvicted { get; init; }

    /// <summary>Present (RAM) CPU entries of the second buffer after the unbind, before the process exited.</summary>
    public int PagesInRamAfterUnbind { get; init; }

    /// <summary>Whether the second buffer read back after the unbind equals everything the process wrote.</summary>
    public bool DataIntactAfterUnbind { get; init; }

    /// <summary><see cref="IDevPagemapOps.MigrateToRam"/> calls at the end (reading after the eviction faults nothing).</summary>
    public int MigrateToRamCallsAtEnd { get; init; }

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

    /// <summary>Free System RAM pages after the device unbound and the process exited.</summary>
    public ulong FreeRamPagesAtEnd { get; init; }

    /// <summary>The device unbound completely, the process lost no data and no RAM leaked.</summary>
    public bool IsClean =>
        DataIntactAfterUnbind && !DeviceBound && PagemapState == DevPagemapState.Removed && !DeviceRangePresent && FreeRamPagesAtEnd == FreeRamPagesAtStart;
}
