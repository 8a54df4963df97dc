
namespace Hmm.Cli.Workloads;

/// <summary>
/// The mirroring half of the default workload: a process writes its memory, a device mirrors it through
/// <c>hmm_range_fault</c>, and then munmap, mprotect, madvise and a copy-on-write break after fork each
/// invalidate the device's entries before the CPU page table changes.
/// </summary>
internal static class MirroringPhase
{
    private const ulong Page = 4096;

    public static void Run(PhysicalMemory memory, WorkloadSettings settings, Report report)
    {
        var random = new Random(settings.Seed);
        ulong pages = (ulong)Math.Clamp(settings.Pages / 8, 16, 512);
        var mm = new Mm(memory, "app");
        ulong start = mm.Mmap(0, pages * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        var data = new byte[pages * Page];
        random.NextBytes(data);
        mm.Write(start, data);
        report.Step("process", $"mmap {pages} pages at 0x{start:x}, written by the CPU");

        var driver = new MirrorDriver(mm, start, pages * Page);
        Errno result = driver.Mirror(start, start + pages * Page, fault: true, write: true);
        report.Step("mirror", $"hmm_range_fault(REQ_FAULT|REQ_WRITE): {result}; device maps {driver.MappedPages} pages");

        mm.Munmap(start, 4 * Page);
        report.Step("munmap", $"first 4 pages unmapped: device maps {driver.MappedPages} pages after {driver.Invalidations} invalidation(s)");

        mm.Mprotect(start + 4 * Page, 4 * Page, Protection.Read);
        report.Step("mprotect", $"next 4 pages read-only: device maps {driver.MappedPages} pages");

        mm.Madvise(start + 8 * Page, 4 * Page, Advice.DontNeed);
        report.Step("madvise", $"next 4 pages DONTNEED: device maps {driver.MappedPages} pages");

        result = driver.Mirror(start + 4 * Page, start + pages * Page, fault: false, write: false);
        report.Step("snapshot", $"hmm_range_fault snapshot: {result}; device maps {driver.MappedPages} pages (no faults taken)");

        Mm child = mm.Fork("app-child");
        report.Step("fork", $"child forked: private pages write-protected for copy-on-write, device maps {driver.MappedPages} pages");
        result = driver.Mirror(start + 12 * Page, start + pages * Page, fault: false, write: false);
        report.Step("snapshot", $"re-mirrored read-only after fork: {result}; device maps {driver.MappedPages} pages");
        child.Write(start + 12 * Page, [0xAB]);
        mm.Write(start + 13 * Page, [0xCD]);
        report.Step("cow", $"child and parent each wrote one page; the parent's COW break dropped its page: device maps {driver.MappedPages} pages");

        child.Exit();
        mm.Exit();
        report.Step("exit", $"both processes exited: device maps {driver.MappedPages} pages; {driver.Invalidations} invalidations, {driver.Retries} retries");

        report.Counter("mirrored pages at start", pages);
        report.Counter("invalidations seen by the mirror", driver.Invalidations);
        report.Counter("hmm_range_fault retries", driver.Retries);
    }
}
