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
    public void TheGuideProgramMirrorsTheBufferFollowsTheProcessAndUnbindsWithoutLeaks()
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

        // Teardown: the device page came back through PageFree, the device unbound, nothing leaked.
        result.DevicePagesFreed.Should().Be(1);
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
