using Microsoft.Extensions.Logging;

namespace Hmm.Cli.Workloads;

/// <summary>
/// The built-in workload. First, device memory lifetimes: a device registers device-private memory, a driver
/// hands pages out and fills them, the device is unbound while pages are still held (and the blocking unbind
/// names them), then the last references are put and the teardown completes. Then mirroring: see
/// <see cref="MirroringPhase"/>.
/// </summary>
internal static class DefaultWorkload
{
    public static void Run(WorkloadSettings settings, ILogger logger, Report report)
    {
        var random = new Random(settings.Seed);
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = (ulong)settings.RamMiB << 20, Logger = logger });
        report.Step("setup", $"System RAM {settings.RamMiB} MiB online, {memory.RamPages} allocatable pages");

        var device = new ManagedDevice(memory, "gpu0");
        PhysicalRange region = Devm.RequestFreeRegion(device, (ulong)settings.DeviceMiB << 20);
        var driver = new FreeListDriver();
        driver.AddRange(region);
        DevPagemap pagemap = Devm.Map(device, new DevPagemapOptions
        {
            Type = MemoryType.DevicePrivate,
            Ranges = [region],
            Owner = device,
            Ops = driver,
            Name = "gpu0-vram",
        });
        report.Step("register", $"devm_memremap_pages: pagemap {pagemap.Id} over {region}, {pagemap.PageCount} device pages");

        int count = Math.Min(settings.Pages, (int)pagemap.PageCount);
        var held = new List<Pfn>(count);
        for (int i = 0; i < count && driver.TryTake(out Pfn pfn); i++)
        {
            pagemap.InitDevicePage(pfn);
            memory.PageData(pfn).Fill((byte)random.Next(256));
            memory.UnlockPage(pfn);
            held.Add(pfn);
        }

        report.Step("allocate", $"{held.Count} device pages initialised, filled and held; pagemap ref count {pagemap.ReferenceCount}");

        int extra = 0;
        foreach (Pfn pfn in held)
        {
            if (random.Next(4) == 0)
            {
                memory.GetPage(pfn);
                extra++;
            }
        }

        report.Step("reference", $"{extra} pages got a second reference (a simulated DMA in flight)");

        try
        {
            device.Unbind(TimeSpan.FromMilliseconds(50));
        }
        catch (DeviceTeardownTimeoutException timeout)
        {
            report.Step("unbind", $"blocking unbind timed out: {timeout.ReferencedPages.Count} pages still referenced, first {timeout.ReferencedPages[0].Pfn} (refcount {timeout.ReferencedPages[0].RefCount})");
        }

        using (DevPagemapReference lookup = DevPagemap.Get(memory, held[0]))
        {
            report.Step("unbind", $"pagemap is {pagemap.State}; lookup of a held page returns {(lookup.HasValue ? "the pagemap" : "nothing (dying)")}");
        }

        // Read each count before putting: the last put of the last page lets teardown remove the struct pages,
        // so a frame must not be looked at again after its final put.
        foreach (Pfn pfn in held)
        {
            for (int refs = memory.PageRefCount(pfn); refs > 0; refs--)
            {
                memory.PutPage(pfn);
            }
        }

        device.UnbindAsync().GetAwaiter().GetResult();
        report.Step("teardown", $"last put done: pagemap {pagemap.State}, {driver.FreedPages} pages freed through page-free, region released: {memory.Resources().Count == 1}");

        report.Counter("device pages initialised", held.Count);
        report.Counter("extra references", extra);
        report.Counter("pages freed via page-free", driver.FreedPages);
        report.Counter("pagemap state", pagemap.State);
        report.Counter("device range present after teardown", memory.IsPresent(region.StartPfn));

        MirroringPhase.Run(memory, settings, report);
        report.Counter("free RAM pages at the end", $"{memory.FreeRamPages} of {memory.RamPages}");
    }
}
