using FluentAssertions;
using Xunit;

namespace Hmm.Tests.AddressSpace;

public class MmSmokeTests
{
    private readonly PhysicalMemory _memory = new(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });

    [Fact]
    public void AnonymousMemoryReadsZerosThenWhatWasWritten()
    {
        var mm = new Mm(_memory);
        ulong a = mm.Mmap(0, 3 * 4096, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        var buffer = new byte[3 * 4096];
        mm.Read(a, buffer);
        buffer.Should().OnlyContain(b => b == 0);
        mm.ReadPte(a).Pfn.Should().Be(PhysicalMemory.ZeroPage);

        byte[] data = Enumerable.Range(0, 5000).Select(i => (byte)i).ToArray();
        mm.Write(a + 100, data);
        mm.Read(a + 100, buffer.AsSpan(0, 5000));
        buffer.AsSpan(0, 5000).ToArray().Should().Equal(data);
        mm.ReadPte(a).IsWritable.Should().BeTrue();
    }

    [Fact]
    public void ForkSharesCopyOnWrite()
    {
        var parent = new Mm(_memory);
        ulong a = parent.Mmap(0, 4096, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        parent.Write(a, [1, 2, 3]);
        Pfn page = parent.ReadPte(a).Pfn;
        Mm child = parent.Fork();
        _memory.Page(page).MapCount.Should().Be(2);
        Rmap.FindMappings(_memory, page).Should().HaveCount(2);
        child.Write(a, [9]);
        var b = new byte[3];
        parent.Read(a, b);
        b.Should().Equal(1, 2, 3);
        child.Read(a, b);
        b.Should().Equal(9, 2, 3);
        _memory.Page(page).MapCount.Should().Be(1);
        child.Exit();
        parent.Munmap(a, 4096);
        _memory.Page(page).RefCount.Should().Be(0);
    }

    [Fact]
    public void MunmapOfTheMiddleSplitsTheArea()
    {
        var mm = new Mm(_memory);
        ulong a = mm.Mmap(0, 3 * 4096, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        mm.Write(a, new byte[3 * 4096]);
        ulong free = _memory.FreeRamPages;
        mm.Munmap(a + 4096, 4096);
        mm.Areas().Should().HaveCount(2);
        _memory.FreeRamPages.Should().Be(free + 1);
        Action read = () => mm.Read(a + 4096, new byte[1]);
        read.Should().Throw<SegmentationFaultException>();
    }

    [Fact]
    public void SharedFileMappingsSeeEachOthersWrites()
    {
        var file = new SimFile(_memory, "f", 8192);
        var one = new Mm(_memory);
        var two = new Mm(_memory);
        ulong a = one.Mmap(0, 8192, Protection.ReadWrite, MapFlags.Shared, file);
        ulong b = two.Mmap(0, 8192, Protection.Read, MapFlags.Shared, file);
        one.Write(a + 4095, [7, 8]);
        var read = new byte[2];
        two.Read(b + 4095, read);
        read.Should().Equal(7, 8);
        file.Read(4095, read);
        read.Should().Equal(7, 8);
    }

    [Fact]
    public void MremapMovesPagesAndKeepsData()
    {
        var mm = new Mm(_memory);
        ulong a = mm.Mmap(0, 2 * 4096, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        mm.Write(a, [5]);
        mm.Write(a + 4096, [6]);
        ulong target = mm.Mmap(0, 64 * 4096, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        ulong moved = mm.Mremap(a, 2 * 4096, 2 * 4096, MremapFlags.MayMove | MremapFlags.Fixed, target + 16 * 4096);
        moved.Should().Be(target + 16 * 4096);
        var b = new byte[1];
        mm.Read(moved + 4096, b);
        b[0].Should().Be(6);
        Pfn page = mm.ReadPte(moved).Pfn;
        Rmap.FindMappings(_memory, page).Should().ContainSingle().Which.Address.Should().Be(moved);
    }
}
