using System.Globalization;
using Hmm;

namespace DriverGuide;

/// <summary>
/// The program of docs/driver-guide.md: a simulated GPU driver registers device-private memory, mirrors a
/// process buffer into its device page table, follows the process's changes through its interval notifier,
/// and unbinds. Run it with <c>dotnet run --project docs/DriverGuide</c>.
/// </summary>
public static class DriverGuideProgram
{
    private const int BufferPages = 16;
    private const int WrittenPages = 8;
    private const int WrittenDevicePages = 12;

    /// <summary>Runs the guide and exits 0 when the device unbound cleanly and no memory leaked.</summary>
    /// <returns>The process exit code.</returns>
    public static int Main()
    {
        DriverGuideResult result = Run(Console.Out);
        return result.IsClean ? 0 : 1;
    }

    /// <summary>Runs the whole guide once on a fresh simulated machine, printing what the driver sees.</summary>
    /// <param name="output">Where to print.</param>
    /// <returns>What the driver saw, for the test that runs this program.</returns>
    public static DriverGuideResult Run(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);

        // <snippet:bring-up>
        // One simulated machine with 64 MiB of System RAM, and a device bound to it.
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });
        var device = new ManagedDevice(memory, "gpu0");
        var driver = new DeviceMemoryDriver();
        object owner = driver;                // pgmap->owner: marks device-private pages as this driver's

        // devm_request_free_mem_region + devm_memremap_pages: both are released when the device unbinds.
        PhysicalRange vram = Devm.RequestFreeRegion(device, 2UL << 20);
        DevPagemap pagemap = Devm.Map(device, new DevPagemapOptions
        {
            Type = MemoryType.DevicePrivate,
            Ranges = [vram],
            Owner = owner,
            Ops = driver,                     // IDevPagemapOps: PageFree and MigrateToRam
            Name = "gpu0-vram",
        });
        driver.AddFreePages(vram);
        // </snippet:bring-up>

        // <snippet:evict-action>
        // devm_add_action: registered after Devm.Map, so it runs before the pagemap's teardown (unbind runs the
        // actions in reverse order). Whatever a process still has on the device goes back to RAM first.
        device.AddAction(() =>
        {
            driver.Evict(pagemap);
            return Task.CompletedTask;
        });
        // </snippet:evict-action>
        ulong freeRamAtStart = memory.FreeRamPages;
        Print(output, $"device {device.Name}: pagemap '{pagemap.Name}' over {vram}, {pagemap.PageCount} device pages");

        // <snippet:device-page-use>
        // Hand a device page out and give it back: unlock it, and the last put returns it through PageFree.
        if (!driver.TryAllocateDevicePage(pagemap, mirror: null, out Pfn devicePage))
        {
            throw new InvalidOperationException("A new pagemap has free pages.");
        }

        memory.UnlockPage(devicePage);
        memory.PutPage(devicePage);
        // </snippet:device-page-use>
        Print(output, $"device page {devicePage}: allocated and freed, {driver.PagesFreed} page(s) back through PageFree");

        // <snippet:process>
        // A process with a 16-page private anonymous buffer, of which it writes the first 8 pages.
        var mm = new Mm(memory, "app");
        ulong length = BufferPages * (ulong)PageSize.Bytes;
        ulong buffer = mm.Mmap(0, length, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        byte[] data = new byte[WrittenPages * PageSize.Bytes];
        data.AsSpan().Fill(0x5A);
        mm.Write(buffer, data);
        // </snippet:process>
        Print(output, $"process {mm.Name}: buffer at 0x{buffer:x}, {BufferPages} pages, first {WrittenPages} written");

        var mirror = new ProcessMirror(mm, buffer, length, owner);

        // <snippet:mirror-read>
        // Mirror the whole buffer for reading: untouched pages are read-faulted in (they map the shared zero
        // page, read-only); the written ones come back writable.
        Errno mirrored = mirror.Populate(buffer, buffer + length, HmmPfn.RequestFault);
        // </snippet:mirror-read>
        IReadOnlyList<KeyValuePair<ulong, ulong>> table = mirror.DevicePageTable();
        int writable = table.Count(e => (e.Value & HmmPfn.Write) != 0);
        int zeroPage = table.Count(e => HmmPfn.ToPfn(e.Value) == PhysicalMemory.ZeroPage);
        Print(output, $"mirror for reading: {mirrored}, {table.Count} pages valid, {writable} writable, {zeroPage} on the zero page, retries: {mirror.Retries}");

        // <snippet:mirror-write>
        // Mirror it again for writing: each zero-page entry needs a write fault, which gives the page its own
        // frame. That change invalidates the range while Fault runs, so Fault returns EBUSY and Populate starts
        // again from ReadBegin; the second pass finds every page writable.
        Errno mirroredForWrite = mirror.Populate(buffer, buffer + length, HmmPfn.RequestFault | HmmPfn.RequestWrite);
        // </snippet:mirror-write>
        IReadOnlyList<KeyValuePair<ulong, ulong>> writeTable = mirror.DevicePageTable();
        int writableAfterWriteMirror = writeTable.Count(e => (e.Value & HmmPfn.Write) != 0);
        int retries = mirror.Retries;
        int invalidationsByFaults = mirror.Invalidations;
        Print(output, $"mirror for writing: {mirroredForWrite}, {writableAfterWriteMirror} writable, {invalidationsByFaults} invalidation(s) by its own faults, retries: {retries}");

        // <snippet:invalidate-use>
        // The process makes the buffer read-only: the notifier calls Invalidate, the device table empties, and
        // the next mirror sees no page writable.
        mm.Mprotect(buffer, length, Protection.Read);
        int afterMprotect = mirror.DevicePageTable().Count;
        Errno remirrored = mirror.Populate(buffer, buffer + length, HmmPfn.RequestFault);
        int writableAfterMprotect = mirror.DevicePageTable().Count(e => (e.Value & HmmPfn.Write) != 0);
        // </snippet:invalidate-use>
        Print(output, $"mprotect(read): {mirror.Invalidations - invalidationsByFaults} invalidation(s), device table {afterMprotect} entries; mirror again: {remirrored}, {writableAfterMprotect} writable");

        // <snippet:errors-use>
        // Errors: asking to fault pages that are no longer mapped is hmm_range_fault's EFAULT, returned;
        // an unaligned range is an invalid argument, thrown as HmmException(EINVAL) and turned into -EINVAL.
        mm.Munmap(buffer, length);
        Errno afterUnmap = mirror.Populate(buffer, buffer + length, HmmPfn.RequestFault);
        int unaligned = mirror.MirrorIoctl(buffer + 1, buffer + length, HmmPfn.RequestFault);
        // </snippet:errors-use>
        Print(output, $"munmap: device table {mirror.DevicePageTable().Count} entries; mirror of the unmapped range: {afterUnmap}; unaligned ioctl: {unaligned}");

        // <snippet:migrate-use>
        // A second buffer, for the device: the process writes 12 of its 16 pages (page i holds i + 1 in every
        // byte); the other 4 have no page yet. Move all of it to device memory.
        ulong gpu = mm.Mmap(0, length, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        byte[] expected = new byte[length];
        for (int i = 0; i < WrittenDevicePages; i++)
        {
            expected.AsSpan(i * PageSize.Bytes, PageSize.Bytes).Fill((byte)(i + 1));
        }

        mm.Write(gpu, expected.AsSpan(0, WrittenDevicePages * PageSize.Bytes));
        var gpuMirror = new ProcessMirror(mm, gpu, length, owner);
        (ulong collected, int moved) = gpuMirror.MigrateToDevice(driver, pagemap, gpu, gpu + length);
        // </snippet:migrate-use>
        int onDevice = CountPtes(mm, gpu, PteKind.DevicePrivate);
        Print(output, $"migrate to device: {collected} collected, {moved} moved, {onDevice} pages device-private, device table {gpuMirror.DevicePageTable().Count} entries");

        // <snippet:cpu-fault-use>
        // The CPU reads page 3 and writes into page 5: each access meets a device-private entry, so the fault
        // calls the driver's MigrateToRam, which moves that page back to RAM before the access goes on.
        byte[] page3 = new byte[PageSize.Bytes];
        mm.Read(gpu + (3 * (ulong)PageSize.Bytes), page3);
        byte[] update = new byte[256];
        update.AsSpan().Fill(0xC5);
        mm.Write(gpu + (5 * (ulong)PageSize.Bytes) + 100, update);
        update.CopyTo(expected, (5 * PageSize.Bytes) + 100);
        // </snippet:cpu-fault-use>
        bool faultedPageIntact = page3.AsSpan().SequenceEqual(expected.AsSpan(3 * PageSize.Bytes, PageSize.Bytes));
        int migrateToRamCalls = driver.MigrateToRamCalls;
        int onDeviceAfterFaults = CountPtes(mm, gpu, PteKind.DevicePrivate);
        int deviceTableAfterFaults = gpuMirror.DevicePageTable().Count;
        Print(output, $"CPU read page 3, wrote page 5: {migrateToRamCalls} MigrateToRam call(s), page 3 intact {faultedPageIntact}, {onDeviceAfterFaults} pages device-private, device table {deviceTableAfterFaults} entries");

        // <snippet:teardown>
        // Tear down: stop mirroring, then unbind the device while the process still maps device pages. The
        // eviction action moves them back to RAM first, then the pagemap's teardown finds every device page
        // free and removes them, and the region is released.
        mirror.Close();
        gpuMirror.Close();
        device.Unbind(TimeSpan.FromSeconds(30));      // DeviceTeardownTimeoutException names pages still held
        // </snippet:teardown>
        int inRamAfterUnbind = CountPtes(mm, gpu, PteKind.Present);

        // <snippet:after-unbind>
        // The device is gone and the process still has every byte, now in RAM; then it exits.
        byte[] afterUnbind = new byte[length];
        mm.Read(gpu, afterUnbind);
        mm.Exit();
        // </snippet:after-unbind>
        bool dataIntact = afterUnbind.AsSpan().SequenceEqual(expected);
        Print(output, $"unbind: {driver.PagesEvicted} page(s) evicted to RAM, {inRamAfterUnbind} pages present, data intact {dataIntact}");
        var result = new DriverGuideResult
        {
            Mirrored = mirrored,
            PagesMirrored = table.Count,
            WritablePages = writable,
            ZeroPageEntries = zeroPage,
            MirroredForWrite = mirroredForWrite,
            WritablePagesAfterWriteMirror = writableAfterWriteMirror,
            InvalidationsByFaults = invalidationsByFaults,
            Retries = retries,
            Remirrored = remirrored,
            WritablePagesAfterMprotect = writableAfterMprotect,
            DeviceEntriesAfterMprotect = afterMprotect,
            Invalidations = mirror.Invalidations,
            AfterUnmap = afterUnmap,
            UnalignedIoctl = unaligned,
            MigrationCollected = collected,
            PagesMigrated = moved,
            PagesOnDevice = onDevice,
            MigrateToRamCalls = migrateToRamCalls,
            FaultedPageIntact = faultedPageIntact,
            PagesOnDeviceAfterFaults = onDeviceAfterFaults,
            DeviceEntriesAfterFaults = deviceTableAfterFaults,
            PagesEvicted = driver.PagesEvicted,
            PagesInRamAfterUnbind = inRamAfterUnbind,
            DataIntactAfterUnbind = dataIntact,
            MigrateToRamCallsAtEnd = driver.MigrateToRamCalls,
            DevicePagesFreed = driver.PagesFreed,
            DeviceFreePages = driver.FreePages,
            DeviceBound = device.IsBound,
            PagemapState = pagemap.State,
            DeviceRangePresent = memory.IsPresent(vram.StartPfn),
            FreeRamPagesAtStart = freeRamAtStart,
            FreeRamPagesAtEnd = memory.FreeRamPages,
        };
        Print(output, $"exit: device bound {result.DeviceBound}, pagemap {result.PagemapState}, free RAM pages {result.FreeRamPagesAtEnd} of {result.FreeRamPagesAtStart} at start");
        return result;
    }

    private static int CountPtes(Mm mm, ulong start, PteKind kind)
    {
        int count = 0;
        for (int i = 0; i < BufferPages; i++)
        {
            if (mm.ReadPte(start + ((ulong)i * PageSize.Bytes)).Kind == kind)
            {
                count++;
            }
        }

        return count;
    }

    private static void Print(TextWriter output, FormattableString line) =>
        output.WriteLine(line.ToString(CultureInfo.InvariantCulture));
}
