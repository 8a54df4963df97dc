using System.Text;
using System.Text.RegularExpressions;
using DriverGuide;
using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Docs;

/// <summary>
/// docs/driver-guide.md shows the program in docs/DriverGuide: these tests run that program and check that every
/// code block of the guide is, verbatim, a region of its compiled source (and its printed output), so the guide
/// cannot drift from code that compiles.
/// </summary>
public partial class DriverGuideTests
{
    private const string GuidePath = "docs/driver-guide.md";
    private const string ErrorModelPath = "docs/error-model.md";
    private const string ProgramDirectory = "docs/DriverGuide";

    [Fact]
    public void TheGuideProgramMirrorsMigratesFaultsBackEvictsOnUnbindAndLosesNothing()
    {
        DriverGuideResult result = DriverGuideProgram.Run(TextWriter.Null);

        // 16 pages mirrored for reading: 8 written ones writable, 8 untouched ones on the read-only zero page.
        result.Mirrored.Should().Be(Errno.None);
        result.PagesMirrored.Should().Be(16);
        result.WritablePages.Should().Be(8);
        result.ZeroPageEntries.Should().Be(8);

        // Mirrored for writing: the zero pages are replaced (one invalidation each, by the mirror's own
        // faults), so Fault returns EBUSY at least once and the loop starts again; then all 16 are writable.
        result.MirroredForWrite.Should().Be(Errno.None);
        result.WritablePagesAfterWriteMirror.Should().Be(16);
        result.InvalidationsByFaults.Should().Be(8);
        result.Retries.Should().BeGreaterThan(0, "the loop must start again after an invalidation hit the range");

        // mprotect invalidated the device table; the next mirror sees nothing writable.
        result.DeviceEntriesAfterMprotect.Should().Be(0);
        result.Remirrored.Should().Be(Errno.None);
        result.WritablePagesAfterMprotect.Should().Be(0);
        result.Invalidations.Should().Be(10, "8 zero pages replaced, then mprotect and munmap each invalidate the mirrored range once");

        // Error model: a kernel return code is returned, an invalid argument becomes -EINVAL at the ioctl.
        result.AfterUnmap.Should().Be(Errno.EFAULT);
        result.UnalignedIoctl.Should().Be(-(int)Errno.EINVAL);

        // Migration to the device: all 16 pages of the second buffer (12 written, 4 with no page yet) were
        // collected and moved, and every CPU entry of the buffer became device-private.
        result.MigrationCollected.Should().Be(16);
        result.PagesMigrated.Should().Be(16);
        result.PagesOnDevice.Should().Be(16);

        // A CPU read and a CPU write each faulted one page back through MigrateToRam, with the right bytes;
        // the driver removed those two pages from its device table itself (its own migration skips its notifier).
        result.MigrateToRamCalls.Should().Be(2);
        result.FaultedPageIntact.Should().BeTrue();
        result.PagesOnDeviceAfterFaults.Should().Be(14);
        result.DeviceEntriesAfterFaults.Should().Be(14);

        // Unbind evicted the other 14 by PFN before the pagemap went away; every byte the process wrote survived,
        // and reading it afterwards faulted nothing.
        result.PagesEvicted.Should().Be(14);
        result.PagesInRamAfterUnbind.Should().Be(16);
        result.DataIntactAfterUnbind.Should().BeTrue();
        result.MigrateToRamCallsAtEnd.Should().Be(2);

        // Teardown: the test page and the 16 migrated device pages came back through PageFree, the device
        // unbound, nothing leaked.
        result.DevicePagesFreed.Should().Be(17);
        result.DeviceFreePages.Should().Be(512);
        result.DeviceBound.Should().BeFalse();
        result.PagemapState.Should().Be(DevPagemapState.Removed);
        result.DeviceRangePresent.Should().BeFalse();
        result.FreeRamPagesAtEnd.Should().Be(result.FreeRamPagesAtStart);
        result.IsClean.Should().BeTrue();
    }

    [Fact]
    public void TheGuideMirrorReturnsEfaultOnceTheProcessHasExitedAndChangesNothing()
    {
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 16UL << 20 });
        var mm = new Mm(memory, "exiting");
        ulong length = 4 * (ulong)PageSize.Bytes;
        ulong buffer = mm.Mmap(0, length, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        var mirror = new ProcessMirror(mm, buffer, length, owner: new object());
        mirror.Close();
        mm.Exit();
        ulong freeBefore = memory.FreeRamPages;

        mirror.Populate(buffer, buffer + length, HmmPfn.RequestFault).Should().Be(Errno.EFAULT);
        mirror.MirrorIoctl(buffer, buffer + length, HmmPfn.RequestFault).Should().Be(-(int)Errno.EFAULT);

        mirror.DevicePageTable().Should().BeEmpty();
        memory.FreeRamPages.Should().Be(freeBefore);
        mm.IsAlive.Should().BeFalse();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task TheGuideMirrorNeverKeepsAnEntryThatTheProcessChangedUnderIt(int seed)
    {
        // The mirror loop and the invalidate callback together must leave in the device table only entries
        // that still match the CPU page table, however the process's changes interleave with the mirroring.
        const int Pages = 32;
        const int Changes = 2000;
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 32UL << 20 });
        var mm = new Mm(memory, "churn");
        ulong length = Pages * (ulong)PageSize.Bytes;
        ulong buffer = mm.Mmap(0, length, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        var mirror = new ProcessMirror(mm, buffer, length, owner: new object());

        Task changer = Task.Run(() =>
        {
            var random = new Random(seed);
            byte[] value = [(byte)seed];
            for (int i = 0; i < Changes; i++)
            {
                ulong page = buffer + ((ulong)random.Next(Pages) * PageSize.Bytes);
                if (random.Next(2) == 0)
                {
                    mm.Madvise(page, PageSize.Bytes, Advice.DontNeed);
                }
                else
                {
                    mm.Write(page, value);
                }
            }
        });
        Task mirrorer = Task.Run(() =>
        {
            var random = new Random(seed + 1_000_000);
            while (!changer.IsCompleted)
            {
                int first = random.Next(Pages);
                int count = random.Next(1, Pages - first + 1);
                ulong start = buffer + ((ulong)first * PageSize.Bytes);
                ulong flags = HmmPfn.RequestFault | (random.Next(2) == 0 ? HmmPfn.RequestWrite : 0);
                mirror.Populate(start, start + ((ulong)count * PageSize.Bytes), flags).Should().Be(Errno.None, $"seed {seed}");
            }
        });

        // A bound against hangs only: a TimeoutException names no seed, so the seed is in the test's name.
        await Task.WhenAll(changer, mirrorer).WaitAsync(TimeSpan.FromMinutes(2));
        foreach ((ulong address, ulong entry) in mirror.DevicePageTable())
        {
            Pte pte = mm.ReadPte(address);
            pte.IsPresent.Should().BeTrue($"seed {seed}: the device maps 0x{address:x}, so the CPU must too");
            pte.Pfn.Should().Be(HmmPfn.ToPfn(entry), $"seed {seed}: the device's frame at 0x{address:x} must be the CPU's");
            if ((entry & HmmPfn.Write) != 0)
            {
                pte.IsWritable.Should().BeTrue($"seed {seed}: a device-writable page at 0x{address:x} must be CPU-writable");
            }
        }

        mirror.Close();
        mm.Exit();
    }

    [Fact]
    public void TheGuideDriversFaultPathReturnsOomWhenNoRamPageIsFreeAndTheDevicePageStaysMapped()
    {
        using GuideMachine machine = new(pages: 4);
        machine.Mirror.MigrateToDevice(machine.Driver, machine.Pagemap, machine.Buffer, machine.End).Moved.Should().Be(4);
        ulong page1 = machine.Buffer + PageSize.Bytes;
        Pte before = machine.Mm.ReadPte(page1);
        ulong freeRam = machine.Memory.FreeRamPages;
        int freeDevicePages = machine.Driver.FreePages;
        byte[] read = new byte[PageSize.Bytes];

        machine.Memory.FaultInjection.FailNext(FaultPoint.PageAllocation);
        Action cpuRead = () => machine.Mm.Read(page1, read);

        // dmirror_devmem_fault's VM_FAULT_OOM: the access fails with ENOMEM and the page is still on the device,
        // mapped as before, still in the device table, and nothing was allocated or freed.
        cpuRead.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        machine.Driver.MigrateToRamCalls.Should().Be(1);
        before.Kind.Should().Be(PteKind.DevicePrivate);
        machine.Mm.ReadPte(page1).Should().Be(before);
        machine.Mirror.DevicePageTable().Should().HaveCount(4);
        machine.Memory.FreeRamPages.Should().Be(freeRam);
        machine.Driver.FreePages.Should().Be(freeDevicePages);

        // The next access moves it back with its bytes.
        machine.Mm.Read(page1, read);
        read.Should().Equal(machine.Expected.AsSpan(PageSize.Bytes, PageSize.Bytes).ToArray());
        machine.Mm.ReadPte(page1).Kind.Should().Be(PteKind.Present);
        machine.Mirror.DevicePageTable().Should().HaveCount(3);
        machine.TearDownAndAssertNothingLost();
    }

    [Fact]
    public void TheGuideDriverLeavesPagesItHasNoDevicePageForWhereTheyWere()
    {
        using GuideMachine machine = new(pages: 16);
        var held = new List<Pfn>();
        while (machine.Driver.FreePages > 4)
        {
            machine.Driver.TryAllocateDevicePage(machine.Pagemap, mirror: null, out Pfn page).Should().BeTrue();
            held.Add(page);
        }

        Pte[] before = [.. Enumerable.Range(0, 16).Select(i => machine.Mm.ReadPte(machine.Buffer + ((ulong)i * PageSize.Bytes)))];

        (ulong collected, int moved) = machine.Mirror.MigrateToDevice(machine.Driver, machine.Pagemap, machine.Buffer, machine.End);

        // Every page was collected, 4 got a device page; the other 12 keep exactly their old mapping.
        collected.Should().Be(16);
        moved.Should().Be(4);
        for (int i = 0; i < 16; i++)
        {
            Pte pte = machine.Mm.ReadPte(machine.Buffer + ((ulong)i * PageSize.Bytes));
            if (i < 4)
            {
                pte.Kind.Should().Be(PteKind.DevicePrivate, $"page {i} had a device page");
            }
            else
            {
                pte.Should().Be(before[i], $"page {i} had no device page, so nothing about it may change");
            }
        }

        machine.Mirror.DevicePageTable().Should().HaveCount(4);
        machine.Driver.FreePages.Should().Be(0);
        foreach (Pfn page in held)
        {
            machine.Memory.UnlockPage(page);
            machine.Memory.PutPage(page);
        }

        machine.ReadBuffer().Should().Equal(machine.Expected);
        machine.TearDownAndAssertNothingLost();
    }

    [Fact]
    public void TheGuideDriversEvictionAtUnbindMovesPagesBackInEveryProcessThatMapsThem()
    {
        using GuideMachine machine = new(pages: 8);
        machine.Mirror.MigrateToDevice(machine.Driver, machine.Pagemap, machine.Buffer, machine.End).Moved.Should().Be(8);
        Mm child = machine.Mm.Fork();
        try
        {
            child.ReadPte(machine.Buffer).Kind.Should().Be(PteKind.DevicePrivate, "fork copies a device-private entry");

            // Fork write-protected the parent's entries, which invalidated the mirror; mirroring again reports the
            // driver's own device pages without faulting them back.
            machine.Mirror.Populate(machine.Buffer, machine.End, HmmPfn.RequestFault).Should().Be(Errno.None);
            machine.Mirror.DevicePageTable().Should().HaveCount(8).And.OnlyContain(e => machine.Pagemap.Contains(HmmPfn.ToPfn(e.Value)));

            // Unbind with the mirror still open: eviction is not the mirror's own migration (a Clear with no
            // owner), so its notifier drops the device mappings as the pages leave.
            machine.Unbind(keepMirror: true);

            machine.Mirror.DevicePageTable().Should().BeEmpty();
            machine.Driver.PagesEvicted.Should().Be(8);
            machine.Driver.MigrateToRamCalls.Should().Be(0);
            machine.Pagemap.State.Should().Be(DevPagemapState.Removed);
            byte[] childData = new byte[machine.Expected.Length];
            child.Read(machine.Buffer, childData);
            childData.Should().Equal(machine.Expected);
            machine.ReadBuffer().Should().Equal(machine.Expected);
        }
        finally
        {
            child.Exit();
        }

        machine.TearDownAndAssertNothingLost();
    }

    /// <summary>The guide's bring-up, eviction action and a written buffer with a mirror, as the program sets them up.</summary>
    private sealed class GuideMachine : IDisposable
    {
        private bool _unbound;
        private bool _mirrorOpen = true;

        public GuideMachine(int pages)
        {
            Memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 16UL << 20 });
            Device = new ManagedDevice(Memory, "gpu");
            Driver = new DeviceMemoryDriver();
            PhysicalRange vram = Devm.RequestFreeRegion(Device, 2UL << 20);
            Pagemap = Devm.Map(Device, new DevPagemapOptions { Type = MemoryType.DevicePrivate, Ranges = [vram], Owner = Driver, Ops = Driver });
            Driver.AddFreePages(vram);
            DevPagemap pagemap = Pagemap;
            DeviceMemoryDriver driver = Driver;
            Device.AddAction(() =>
            {
                driver.Evict(pagemap);
                return Task.CompletedTask;
            });
            FreeRamAtStart = Memory.FreeRamPages;

            Mm = new Mm(Memory, "app");
            ulong length = (ulong)pages * PageSize.Bytes;
            Buffer = Mm.Mmap(0, length, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
            End = Buffer + length;
            Expected = new byte[length];
            for (int i = 0; i < pages; i++)
            {
                Expected.AsSpan(i * PageSize.Bytes, PageSize.Bytes).Fill((byte)(0x10 + i));
            }

            Mm.Write(Buffer, Expected);
            Mirror = new ProcessMirror(Mm, Buffer, length, Driver);
        }

        public PhysicalMemory Memory { get; }

        public ManagedDevice Device { get; }

        public DeviceMemoryDriver Driver { get; }

        public DevPagemap Pagemap { get; }

        public Mm Mm { get; }

        public ProcessMirror Mirror { get; }

        public ulong Buffer { get; }

        public ulong End { get; }

        public byte[] Expected { get; }

        public ulong FreeRamAtStart { get; }

        public byte[] ReadBuffer()
        {
            byte[] data = new byte[Expected.Length];
            Mm.Read(Buffer, data);
            return data;
        }

        /// <summary>Stops mirroring (unless told not to) and unbinds the device, as the guide's teardown does.</summary>
        public void Unbind(bool keepMirror = false)
        {
            if (!keepMirror)
            {
                CloseMirror();
            }

            Device.Unbind(TimeSpan.FromSeconds(30));
            _unbound = true;
        }

        private void CloseMirror()
        {
            if (_mirrorOpen)
            {
                Mirror.Close();
                _mirrorOpen = false;
            }
        }

        /// <summary>Tears down as the guide does and checks that the process lost nothing and nothing leaked.</summary>
        public void TearDownAndAssertNothingLost()
        {
            if (!_unbound)
            {
                Unbind();
            }

            CloseMirror();
            ReadBuffer().Should().Equal(Expected, "eviction at unbind loses nothing");
            Mm.Exit();
            Memory.FreeRamPages.Should().Be(FreeRamAtStart);
            Driver.FreePages.Should().Be((int)Pagemap.PageCount);
        }

        /// <summary>Tears down without asserting, so that a failing test reports its own failure.</summary>
        public void Dispose()
        {
            if (!_unbound)
            {
                Unbind();
            }

            CloseMirror();
            if (Mm.IsAlive)
            {
                Mm.Exit();
            }
        }
    }

    [Theory]
    [InlineData(GuidePath)]
    [InlineData(ErrorModelPath)]
    public void EveryCodeBlockOfTheDocumentIsARegionOfTheCompiledProgramVerbatim(string document)
    {
        Dictionary<string, string> regions = SourceRegions();
        List<DocumentBlock> blocks = Blocks(document);

        blocks.Where(b => b.Language == "csharp").Should().NotBeEmpty();
        foreach (DocumentBlock block in blocks.Where(b => b.Language == "csharp"))
        {
            block.Marker.Should().NotBeNull($"the C# block at line {block.Line} of {document} must be a snippet of {ProgramDirectory} (<!-- snippet: name --> above it)");
            regions.Should().ContainKey(block.Marker!, $"{document} line {block.Line} names a snippet that {ProgramDirectory} does not mark");
            block.Code.Should().Be(regions[block.Marker!], $"the block at {document} line {block.Line} must be the region '{block.Marker}' of the source, verbatim");
        }
    }

    [Fact]
    public void EveryRegionOfTheProgramIsShownInTheGuide()
    {
        Dictionary<string, string> regions = SourceRegions();
        string guide = ReadRepositoryFile(GuidePath);

        regions.Should().NotBeEmpty();
        foreach ((string name, string code) in regions)
        {
            guide.Should().Contain("```csharp\n" + code + "\n```", $"the region '{name}' of {ProgramDirectory} must appear in {GuidePath}");
        }
    }

    [Fact]
    public void TheOutputShownInTheGuideIsWhatTheProgramPrints()
    {
        var output = new StringWriter { NewLine = "\n" };
        DriverGuideProgram.Run(output);

        DocumentBlock shown = Blocks(GuidePath).Single(b => b.Marker == "output: DriverGuide");
        shown.Language.Should().Be("text");
        shown.Code.Should().Be(output.ToString().TrimEnd('\n'));
    }

    [Fact]
    public void TheGuideLinksTheErrorModel()
    {
        ReadRepositoryFile(GuidePath).Should().Contain("(error-model.md)");
        ReadRepositoryFile(ErrorModelPath).Should().Contain("KernelBugException");
    }

    /// <summary>Every <c>// &lt;snippet:name&gt;</c> region of the program's sources, dedented, with <c>\n</c> line ends.</summary>
    private static Dictionary<string, string> SourceRegions()
    {
        var regions = new Dictionary<string, string>(StringComparer.Ordinal);
        string directory = Path.Combine(RepositoryRoot(), ProgramDirectory);
        foreach (string file in Directory.EnumerateFiles(directory, "*.cs", SearchOption.TopDirectoryOnly).Order(StringComparer.Ordinal))
        {
            string[] lines = Normalize(File.ReadAllText(file)).Split('\n');
            string? open = null;
            var body = new List<string>();
            for (int i = 0; i < lines.Length; i++)
            {
                Match start = SnippetStart().Match(lines[i]);
                Match end = SnippetEnd().Match(lines[i]);
                string where = $"{Path.GetFileName(file)} line {i + 1}";
                if (start.Success)
                {
                    open.Should().BeNull($"regions do not nest ({where})");
                    open = start.Groups[1].Value;
                    body.Clear();
                }
                else if (end.Success)
                {
                    end.Groups[1].Value.Should().Be(open, $"a region ends with its own name ({where})");
                    regions.Should().NotContainKey(open!, $"region names are unique ({where})");
                    regions[open!] = Dedent(body);
                    open = null;
                }
                else if (open is not null)
                {
                    body.Add(lines[i]);
                }
            }

            open.Should().BeNull($"every region of {Path.GetFileName(file)} is closed");
        }

        return regions;
    }

    /// <summary>The fenced blocks of a document, each with the <c>&lt;!-- name --&gt;</c> marker on the line before its fence, if any.</summary>
    private static List<DocumentBlock> Blocks(string document)
    {
        string[] lines = ReadRepositoryFile(document).Split('\n');
        var blocks = new List<DocumentBlock>();
        for (int i = 0; i < lines.Length; i++)
        {
            if (!lines[i].StartsWith("```", StringComparison.Ordinal))
            {
                continue;
            }

            string language = lines[i][3..].Trim();
            Match marker = i > 0 ? Marker().Match(lines[i - 1]) : Match.Empty;
            int first = i + 1;
            int close = Array.FindIndex(lines, first, l => l.StartsWith("```", StringComparison.Ordinal));
            close.Should().BeGreaterThan(i, $"the fence at {document} line {i + 1} is closed");
            blocks.Add(new DocumentBlock(
                i + 1,
                language,
                marker.Success ? marker.Groups[1].Value : null,
                string.Join('\n', lines[first..close])));
            i = close;
        }

        return blocks;
    }

    private static string Dedent(List<string> lines)
    {
        int indent = lines.Where(l => l.Trim().Length > 0).Select(l => l.Length - l.TrimStart(' ').Length).DefaultIfEmpty(0).Min();
        var text = new StringBuilder();
        foreach (string line in lines)
        {
            text.Append(line.Trim().Length == 0 ? string.Empty : line[indent..]).Append('\n');
        }

        return text.ToString().TrimEnd('\n');
    }

    private static string ReadRepositoryFile(string relativePath) =>
        Normalize(File.ReadAllText(Path.Combine(RepositoryRoot(), relativePath)));

    private static string Normalize(string text) => text.Replace("\r\n", "\n", StringComparison.Ordinal);

    /// <summary>The checkout the tests were built from: the nearest directory above the test binaries holding Hmm.sln.</summary>
    private static string RepositoryRoot()
    {
        for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Hmm.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"No Hmm.sln above {AppContext.BaseDirectory}.");
    }

    [GeneratedRegex(@"^\s*// <snippet:([a-z0-9-]+)>\s*$")]
    private static partial Regex SnippetStart();

    [GeneratedRegex(@"^\s*// </snippet:([a-z0-9-]+)>\s*$")]
    private static partial Regex SnippetEnd();

    [GeneratedRegex(@"^<!-- (?:snippet: )?([a-zA-Z0-9:. -]+?) -->$")]
    private static partial Regex Marker();

    private sealed record DocumentBlock(int Line, string Language, string? Marker, string Code);
}
