using FluentAssertions;

namespace Hmm.Tests;

/// <summary>
/// The one helper kit of the tests: small machines, well-known device addresses, byte patterns, mapping
/// shortcuts and assertions. Snapshots, recording notifier chains and test threads are in the
/// <c>TestKit.*.cs</c> files beside it.
/// </summary>
internal static class TestKit
{
    public const ulong MiB = 1UL << 20;

    /// <summary>One page in bytes, as an address offset.</summary>
    public const ulong Page = PageSize.Bytes;

    public const MapFlags PrivateAnonymous = MapFlags.Private | MapFlags.Anonymous;
    public const MapFlags SharedAnonymous = MapFlags.Shared | MapFlags.Anonymous;

    /// <summary>The memory section size (<c>SECTION_SIZE_BITS</c> 27).</summary>
    public const ulong SectionBytes = 128 * MiB;

    /// <summary>A section-aligned physical address far above the test machines' RAM, free for device ranges.</summary>
    public const ulong DeviceBase = 64UL << 30;

    /// <summary>How long a test waits for something that must happen before it fails instead of hanging.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>A small machine (RAM frames are 1..RamPages), with page data unless told otherwise.</summary>
    public static PhysicalMemory NewMemory(ulong ramMiB = 16, bool storePageData = true) =>
        new(new PhysicalMemoryOptions { RamBytes = ramMiB * MiB, StorePageData = storePageData });

    /// <summary>A device range at <see cref="DeviceBase"/> + <paramref name="offsetMiB"/>.</summary>
    public static PhysicalRange DeviceRange(ulong offsetMiB, ulong lengthMiB = 2) =>
        new(DeviceBase + (offsetMiB * MiB), lengthMiB * MiB);

    /// <summary>Every frame of the range, in order.</summary>
    public static IEnumerable<Pfn> Pfns(PhysicalRange range)
    {
        for (ulong i = 0; i < range.PageCount; i++)
        {
            yield return range.StartPfn + i;
        }
    }

    /// <summary>The first, second, middle and last frames of the range: enough to see a partial (un)registration.</summary>
    public static Pfn[] Probes(PhysicalRange range) =>
        [range.StartPfn, range.StartPfn + 1, range.StartPfn + (range.PageCount / 2), range.StartPfn + (range.PageCount - 1)];

    /// <summary>Random bytes from <paramref name="seed"/>.</summary>
    public static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>The byte every address-based pattern puts at <paramref name="address"/> for <paramref name="seed"/>.</summary>
    public static byte PatternByte(ulong address, int seed) => (byte)((address >> 3) ^ (address >> PageSize.Shift) ^ (ulong)seed ^ 0x5a);

    /// <summary>The address-based pattern of <paramref name="seed"/> laid at <paramref name="address"/>: moved bytes still tell where they came from.</summary>
    public static byte[] Pattern(ulong address, int length, int seed)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++)
        {
            bytes[i] = PatternByte(address + (ulong)i, seed);
        }

        return bytes;
    }

    /// <summary>Writes the pattern of <paramref name="seed"/> over <c>[address, address + pages)</c> through the CPU.</summary>
    public static void Fill(Mm mm, ulong address, ulong pages, int seed) =>
        mm.Write(address, Pattern(address, checked((int)(pages * Page)), seed));

    public static byte[] ReadBytes(Mm mm, ulong address, int length)
    {
        var bytes = new byte[length];
        mm.Read(address, bytes);
        return bytes;
    }

    public static byte[] ReadBytes(Mm mm, ulong address, ulong length) => ReadBytes(mm, address, checked((int)length));

    public static byte[] PageBytes(PhysicalMemory memory, Pfn pfn) => memory.ReadPageData(pfn).ToArray();

    /// <summary>Asserts the CPU reads the pattern of <paramref name="seed"/> over the pages.</summary>
    public static void ShouldHold(this Mm mm, ulong address, ulong pages, int seed) =>
        ReadBytes(mm, address, pages * Page).Should().Equal(Pattern(address, checked((int)(pages * Page)), seed), $"[0x{address:x}, +{pages} pages) holds pattern {seed}");

    /// <summary>Asserts the CPU reads, over the pages, the pattern of <paramref name="seed"/> laid at <paramref name="patternBase"/> (a file offset, or where the data was first written).</summary>
    public static void ShouldHoldFrom(this Mm mm, ulong address, ulong pages, ulong patternBase, int seed) =>
        ReadBytes(mm, address, pages * Page).Should().Equal(Pattern(patternBase, checked((int)(pages * Page)), seed), $"[0x{address:x}, +{pages} pages) holds pattern {seed} of 0x{patternBase:x}");

    /// <summary>Asserts the CPU reads zeros over the pages.</summary>
    public static void ShouldReadZeros(this Mm mm, ulong address, ulong pages) =>
        ReadBytes(mm, address, pages * Page).Should().OnlyContain(b => b == 0, $"[0x{address:x}, +{pages} pages) reads zeros");

    /// <summary>Maps <paramref name="pages"/> pages of anonymous memory wherever there is room.</summary>
    public static ulong MapAnonymous(this Mm mm, ulong pages, Protection protection = Protection.ReadWrite, bool shared = false) =>
        mm.Mmap(0, pages * Page, protection, shared ? SharedAnonymous : PrivateAnonymous);

    public static ulong MapAnonymousAt(this Mm mm, ulong address, ulong pages, Protection protection = Protection.ReadWrite) =>
        mm.Mmap(address, pages * Page, protection, PrivateAnonymous | MapFlags.FixedNoReplace);

    public static (ulong Start, ulong End, VmFlags Flags, ulong PgOff)[] AreaShapes(this Mm mm) =>
        [.. mm.Areas().Select(v => (v.Start, v.End, v.Flags, v.PgOff))];

    public static Vma VmaAt(Mm mm, ulong address)
    {
        using MmapLockGuard guard = mm.MmapReadLock();
        return mm.FindVma(address)!;
    }

    /// <summary>Every entry of the range, for checking that a failed call changed none of them.</summary>
    public static Pte[] Entries(Mm mm, ulong address, int pages)
    {
        var entries = new Pte[pages];
        for (int i = 0; i < pages; i++)
        {
            entries[i] = mm.ReadPte(address + ((ulong)i * Page));
        }

        return entries;
    }

    public static HmmException ShouldFailWith(this Action action, Errno error) =>
        action.Should().Throw<HmmException>().Where(e => e.Error == error, $"the call fails with {error}").Which;

    public static SegmentationFaultException ShouldSegfault(this Action action) =>
        action.Should().Throw<SegmentationFaultException>().Which;

    /// <summary>A file of <paramref name="pages"/> pages whose bytes are the pattern of <paramref name="seed"/> at their file offset.</summary>
    public static SimFile PatternFile(PhysicalMemory memory, ulong pages, int seed, string name = "file")
    {
        var file = new SimFile(memory, name, pages * Page);
        file.Write(0, Pattern(0, checked((int)(pages * Page)), seed));
        return file;
    }
}
