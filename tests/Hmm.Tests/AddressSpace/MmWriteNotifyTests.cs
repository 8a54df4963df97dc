using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

/// <summary>
/// vma_wants_writenotify: shared writable areas of shmem and of files without write-notify map pages writable on a
/// read fault; files that want it map them read-only until the first write; private areas stay copy-on-write.
/// </summary>
public class MmWriteNotifyTests
{
    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _mm;

    public MmWriteNotifyTests()
    {
        _mm = new Mm(_memory);
    }

    [Fact]
    public void AReadFaultInSharedAnonymousMemoryMapsThePageWritableAndClean()
    {
        ulong a = _mm.Mmap(0, 2 * Page, Protection.ReadWrite, SharedAnonymous);

        ReadBytes(_mm, a, 1);

        Pte pte = _mm.ReadPte(a);
        pte.IsPresent.Should().BeTrue();
        pte.IsWritable.Should().BeTrue("shmem does not want write-notify");
        pte.IsDirty.Should().BeFalse("nothing was written yet");
    }

    [Fact]
    public void AReadFaultInASharedFileMappingWithoutWriteNotifyMapsThePageWritable()
    {
        SimFile file = PatternFile(_memory, 1, seed: 1);
        ulong a = _mm.Mmap(0, Page, Protection.ReadWrite, MapFlags.Shared, file);

        ReadBytes(_mm, a, 1);

        _mm.ReadPte(a).IsWritable.Should().BeTrue();
    }

    [Fact]
    public void AFileThatWantsWriteNotifyIsMappedReadOnlyUntilTheFirstWrite()
    {
        var file = new SimFile(_memory, "tracked", Page) { WantsWriteNotify = true };
        ulong a = _mm.Mmap(0, Page, Protection.ReadWrite, MapFlags.Shared, file);

        ReadBytes(_mm, a, 1);
        _mm.ReadPte(a).IsWritable.Should().BeFalse("the file wants to see the first write");

        _mm.Write(a, [7]);

        Pte pte = _mm.ReadPte(a);
        pte.IsWritable.Should().BeTrue();
        pte.IsDirty.Should().BeTrue();
        var bytes = new byte[1];
        file.Read(0, bytes);
        bytes[0].Should().Be(7);
    }

    [Theory]
    [InlineData(MapFlags.Shared, Protection.Read)]
    [InlineData(MapFlags.Private, Protection.ReadWrite)]
    [InlineData(MapFlags.Private, Protection.Read)]
    public void AReadFaultMapsReadOnlyInReadOnlyOrPrivateAreas(MapFlags type, Protection protection)
    {
        SimFile file = PatternFile(_memory, 1, seed: 1);
        ulong a = _mm.Mmap(0, Page, protection, type, file);
        ulong anonymous = _mm.Mmap(0, Page, protection, type | MapFlags.Anonymous);

        ReadBytes(_mm, a, 1);
        ReadBytes(_mm, anonymous, 1);

        _mm.ReadPte(a).IsWritable.Should().BeFalse();
        _mm.ReadPte(anonymous).IsWritable.Should().BeFalse();
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, false)]
    public void MprotectAddingWriteUpgradesPresentEntriesOnlyWithoutWriteNotify(bool wantsWriteNotify, bool upgraded)
    {
        var file = new SimFile(_memory, "f", 2 * Page) { WantsWriteNotify = wantsWriteNotify };
        ulong a = _mm.Mmap(0, 2 * Page, Protection.Read, MapFlags.Shared, file);
        ReadBytes(_mm, a, 1);
        _mm.ReadPte(a).IsWritable.Should().BeFalse();

        _mm.Mprotect(a, 2 * Page, Protection.ReadWrite);

        _mm.ReadPte(a).IsWritable.Should().Be(upgraded);
        _mm.ReadPte(a + Page).IsNone.Should().BeTrue("mprotect faults nothing in");
        _mm.Write(a, [1]);
        _mm.ReadPte(a).IsWritable.Should().BeTrue();
    }
}
