using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

/// <summary>
/// Driver areas: vm_insert_page into VM_MIXEDMAP areas (refcounted, no reverse map), remap_pfn_range and
/// vmf_insert_pfn into VM_PFNMAP areas (special entries without references), and what unmap, exit, fork, mprotect,
/// madvise, mremap and GUP do with them.
/// </summary>
public class MmSpecialAreaTests
{
    private const ulong Base = 0x4000_0000;

    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _mm;

    public MmSpecialAreaTests()
    {
        _mm = new Mm(_memory, "driver-user");
    }

    /// <summary>A driver page with a recognisable first byte: refcount 1 (the driver's).</summary>
    private Pfn DriverPage(byte mark)
    {
        Pfn page = _memory.AllocatePage();
        _memory.PageData(page).Clear();
        _memory.PageData(page)[0] = mark;
        return page;
    }

    private (ulong Address, Vma Vma) MapDriverArea(ulong pages, MapFlags flags, VmFlags special, Protection protection = Protection.ReadWrite)
    {
        ulong a = _mm.MmapSpecial(Base, pages * Page, protection, flags | MapFlags.FixedNoReplace, special);
        return (a, VmaAt(_mm, a));
    }

    private Errno Insert(Vma vma, ulong address, Pfn page)
    {
        using MmapLockGuard guard = _mm.MmapWriteLock();
        return _mm.InsertPage(vma, address, page);
    }

    [Fact]
    public void InsertPageMapsTheDriversPageWritableInASharedAreaWithoutAReverseMap()
    {
        (ulong a, Vma vma) = MapDriverArea(2, MapFlags.Shared, VmFlags.MixedMap | VmFlags.DontExpand);
        Pfn page = DriverPage(0x11);

        Insert(vma, a, page).Should().Be(0);

        Pte pte = _mm.ReadPte(a);
        (pte.IsPresent, pte.IsWritable, pte.IsSpecial, pte.Pfn).Should().Be((true, true, false, page));
        _memory.Page(page).RefCount.Should().Be(2);
        _memory.Page(page).MapCount.Should().Be(1);
        Rmap.FindMappings(_memory, page).Should().BeEmpty("a driver page has no anon_vma and no file");
        ReadBytes(_mm, a, 1).Should().Equal(0x11);
        _mm.Write(a + 1, [0x22]);
        _memory.PageData(page)[1].Should().Be(0x22, "a shared driver area writes the driver's page itself");
    }

    [Fact]
    public void InsertPageInAPrivateWritableAreaIsReadOnlyAndAWriteCopiesThePage()
    {
        (ulong a, Vma vma) = MapDriverArea(1, MapFlags.Private, VmFlags.MixedMap);
        Pfn page = DriverPage(0x33);
        Insert(vma, a, page).Should().Be(0);
        _mm.ReadPte(a).IsWritable.Should().BeFalse("a private writable area maps with the copy-on-write protection");

        _mm.Write(a + 1, [0x44]);

        Pte pte = _mm.ReadPte(a);
        pte.Pfn.Should().NotBe(page);
        pte.IsWritable.Should().BeTrue();
        ReadBytes(_mm, a, 2).Should().Equal(0x33, 0x44);
        _memory.PageData(page)[1].Should().Be(0, "the driver's page is not written");
        _memory.Page(page).RefCount.Should().Be(1, "the copy dropped the entry's reference");
        _memory.Page(page).MapCount.Should().Be(0);
    }

    [Fact]
    public void UnmapExitAndMadvisePutInsertedPagesAndLeaveTheDriversReference()
    {
        (ulong a, Vma vma) = MapDriverArea(3, MapFlags.Shared, VmFlags.MixedMap);
        Pfn[] pages = [DriverPage(1), DriverPage(2), DriverPage(3)];
        for (int i = 0; i < 3; i++)
        {
            Insert(vma, a + ((ulong)i * Page), pages[i]).Should().Be(0);
        }

        _mm.Madvise(a, Page, Advice.DontNeed);
        _mm.Munmap(a + Page, Page);
        _mm.Exit();

        pages.Select(p => (_memory.Page(p).RefCount, _memory.Page(p).MapCount)).Should().AllBeEquivalentTo((1, 0));
        ulong free = _memory.FreeRamPages;
        foreach (Pfn page in pages)
        {
            _memory.PutPage(page);
        }

        _memory.FreeRamPages.Should().Be(free + 3);
    }

    [Theory]
    [InlineData("outside", Errno.EFAULT)]
    [InlineData("unaligned", Errno.EINVAL)]
    [InlineData("anonymous", Errno.EINVAL)]
    [InlineData("zero", Errno.EINVAL)]
    [InlineData("free", Errno.EINVAL)]
    [InlineData("no struct page", Errno.EINVAL)]
    [InlineData("busy", Errno.EBUSY)]
    public void InsertPageErrorsAreReturnedAndChangeNothing(string problem, Errno expected)
    {
        (ulong a, Vma vma) = MapDriverArea(2, MapFlags.Shared, VmFlags.MixedMap);
        Pfn present = DriverPage(1);
        Insert(vma, a + Page, present).Should().Be(0);
        ulong anon = _mm.MapAnonymous(1);
        _mm.Write(anon, [1]);
        Pfn free = _memory.AllocatePage();
        _memory.PutPage(free);
        (ulong address, Pfn page) = problem switch
        {
            "outside" => (a + (2 * Page), DriverPage(2)),
            "unaligned" => (a + 8, DriverPage(2)),
            "anonymous" => (a, _mm.ReadPte(anon).Pfn),
            "zero" => (a, PhysicalMemory.ZeroPage),
            "free" => (a, free),
            "no struct page" => (a, new Pfn(DeviceBase >> PageSize.Shift)),
            _ => (a + Page, DriverPage(2)),
        };
        int refs = _memory.IsPresent(page) ? _memory.PageRefCount(page) : 0;
        MmSnapshot before = MmSnapshot.Capture(_mm, (a, a + (2 * Page)));

        Insert(vma, address, page).Should().Be(expected);

        before.ShouldBeUnchanged();
        (_memory.IsPresent(page) ? _memory.PageRefCount(page) : 0).Should().Be(refs);
    }

    [Fact]
    public void InsertPageIntoAForeignOrOrdinaryAreaThrowsAndIntoAPfnMapAreaIsAKernelBug()
    {
        var other = new Mm(_memory, "other");
        ulong o = other.MmapSpecial(0, Page, Protection.ReadWrite, MapFlags.Shared, VmFlags.MixedMap);
        Vma foreign = VmaAt(other, o);
        ulong anon = _mm.MapAnonymousAt(Base + (8 * Page), 1);
        Vma ordinary = VmaAt(_mm, anon);
        (ulong p, Vma pfnMap) = MapDriverArea(1, MapFlags.Shared, VmFlags.PfnMap | VmFlags.Io);
        Pfn page = DriverPage(1);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => Insert(foreign, o, page))).ShouldFailWith(Errno.EINVAL).Message.Should().Contain("other");
        ((Action)(() => Insert(ordinary, anon, page))).ShouldFailWith(Errno.EINVAL);
        ((Action)(() => Insert(pfnMap, p, page))).Should().Throw<KernelBugException>();
        ((Action)(() => _mm.InsertPage(pfnMap, p, page))).Should().Throw<KernelBugException>("the mmap lock is not held");

        before.ShouldBeUnchanged();
        other.ReadPte(o).IsNone.Should().BeTrue();
        _memory.PageRefCount(page).Should().Be(1);
    }

    [Fact]
    public void RemapPfnRangeMapsSpecialEntriesThatHoldNoReferenceAndRefusesGup()
    {
        (ulong a, Vma vma) = MapDriverArea(2, MapFlags.Shared, VmFlags.Io);
        Pfn first = _memory.AllocatePage();
        Pfn second = _memory.AllocatePage();
        (second == first + 1).Should().BeTrue("the test needs two consecutive frames");
        _memory.PageData(first)[0] = 0x55;
        ulong free = _memory.FreeRamPages;

        using (_mm.MmapWriteLock())
        {
            _mm.RemapPfnRange(vma, a, first, 2 * Page).Should().Be(0);
        }

        vma.Flags.Should().HaveFlag(VmFlags.Io).And.HaveFlag(VmFlags.PfnMap).And.HaveFlag(VmFlags.DontExpand);
        Pte pte = _mm.ReadPte(a + Page);
        (pte.IsSpecial, pte.IsWritable, pte.Pfn).Should().Be((true, true, second));
        _memory.Page(first).RefCount.Should().Be(1);
        _memory.Page(first).MapCount.Should().Be(0);
        ReadBytes(_mm, a, 1).Should().Equal(0x55);
        ((Action)(() => _mm.GetUserPages(a, GupFlags.None, new Pfn[1]))).ShouldFailWith(Errno.EFAULT);
        ((Action)(() => _mm.PinUserPages(a, GupFlags.None, new Pfn[1]))).ShouldFailWith(Errno.EFAULT);

        _mm.Mprotect(a, 2 * Page, Protection.Read);
        _mm.ReadPte(a).IsWritable.Should().BeFalse();
        _mm.Munmap(a, Page);
        _mm.Exit();

        _memory.Page(first).RefCount.Should().Be(1, "special entries never held a reference");
        _memory.Page(second).RefCount.Should().Be(1);
        _memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void CpuAccessToAFrameWithoutStructPageIsEfault()
    {
        (ulong a, Vma vma) = MapDriverArea(1, MapFlags.Shared, VmFlags.PfnMap | VmFlags.Io);
        using (_mm.MmapWriteLock())
        {
            _mm.RemapPfnRange(vma, a, new Pfn(DeviceBase >> PageSize.Shift), Page).Should().Be(0);
        }

        ((Action)(() => _mm.Read(a, new byte[1]))).ShouldFailWith(Errno.EFAULT);
        ((Action)(() => _mm.Write(a, new byte[1]))).ShouldFailWith(Errno.EFAULT);
        _mm.ReadPte(a).IsSpecial.Should().BeTrue();
    }

    [Fact]
    public void RemapPfnRangeOverAnEntryIsAKernelBugAndChangesNothing()
    {
        (ulong a, Vma vma) = MapDriverArea(3, MapFlags.Shared, VmFlags.PfnMap);
        var device = new Pfn(DeviceBase >> PageSize.Shift);
        using (_mm.MmapReadLock())
        {
            _mm.InsertPfn(vma, a + (2 * Page), device).Should().Be(VmFaultResult.None);
        }

        MmSnapshot before = MmSnapshot.Capture(_mm);
        VmFlags flags = vma.Flags;

        using (_mm.MmapWriteLock())
        {
            ((Action)(() => _mm.RemapPfnRange(vma, a, device + 10, 3 * Page))).Should().Throw<KernelBugException>();
            _mm.RemapPfnRange(vma, a + 8, device, Page).Should().Be(Errno.EINVAL);
            _mm.RemapPfnRange(vma, a, device, 4 * Page).Should().Be(Errno.EINVAL);
            _mm.RemapPfnRange(vma, a, device, 0).Should().Be(Errno.EINVAL);
            ((Action)(() => _mm.RemapPfnRange(vma, a, new Pfn(1UL << 40), Page))).ShouldFailWith(Errno.EINVAL);
        }

        before.ShouldBeUnchanged();
        vma.Flags.Should().Be(flags);
        _mm.ReadPte(a).IsNone.Should().BeTrue();
    }

    [Fact]
    public void InsertPfnOutsideTheAreaIsSigbusAndAnExistingEntryStays()
    {
        (ulong a, Vma vma) = MapDriverArea(1, MapFlags.Shared, VmFlags.PfnMap);
        var device = new Pfn(DeviceBase >> PageSize.Shift);
        using MmapLockGuard guard = _mm.MmapReadLock();

        _mm.InsertPfn(vma, a + Page, device).Should().Be(VmFaultResult.Sigbus);
        _mm.InsertPfn(vma, a + 8, device).Should().Be(VmFaultResult.None);
        _mm.InsertPfn(vma, a, device + 1).Should().Be(VmFaultResult.None);

        _mm.ReadPte(a).Pfn.Should().Be(device, "the first entry stays");
        _mm.ReadPte(a + Page).IsNone.Should().BeTrue();
    }

    [Fact]
    public void AHoleInADriverAreaIsABusError()
    {
        (ulong a, _) = MapDriverArea(1, MapFlags.Shared, VmFlags.MixedMap);

        SegmentationFaultException fault = ((Action)(() => _mm.Read(a, new byte[1]))).ShouldSegfault();

        fault.IsBusError.Should().BeTrue();
        _mm.ReadPte(a).IsNone.Should().BeTrue();
    }

    [Fact]
    public void ForkCopiesADriverAreaWithAReferenceForEachInsertedPageOnly()
    {
        (ulong a, Vma vma) = MapDriverArea(2, MapFlags.Shared, VmFlags.MixedMap);
        Pfn page = DriverPage(0x66);
        Insert(vma, a, page).Should().Be(0);
        using (_mm.MmapReadLock())
        {
            _mm.InsertPfn(vma, a + Page, new Pfn(DeviceBase >> PageSize.Shift)).Should().Be(VmFaultResult.None);
        }

        Mm child = _mm.Fork("child");

        child.ReadPte(a).Should().Be(_mm.ReadPte(a), "a shared area is copied as it is");
        child.ReadPte(a + Page).Should().Be(_mm.ReadPte(a + Page));
        _mm.ReadPte(a).IsWritable.Should().BeTrue("a shared area is not write-protected");
        (_memory.Page(page).RefCount, _memory.Page(page).MapCount).Should().Be((3, 2));
        ReadBytes(child, a, 1).Should().Equal(0x66);

        child.Exit();
        (_memory.Page(page).RefCount, _memory.Page(page).MapCount).Should().Be((2, 1));
    }

    [Fact]
    public void ForkOfAPrivatePfnMapAreaOfDeviceFramesWriteProtectsBothAndTakesNoReference()
    {
        (ulong a, Vma vma) = MapDriverArea(2, MapFlags.Private, VmFlags.PfnMap | VmFlags.Io);
        var device = new Pfn(DeviceBase >> PageSize.Shift);
        using (_mm.MmapWriteLock())
        {
            _mm.RemapPfnRange(vma, a, device, 2 * Page).Should().Be(0);
        }

        ulong free = _memory.FreeRamPages;

        Mm child = _mm.Fork("child");

        child.ReadPte(a + Page).Should().Be(_mm.ReadPte(a + Page));
        (child.ReadPte(a).IsSpecial, child.ReadPte(a).IsWritable, child.ReadPte(a).Pfn).Should().Be((true, false, device));
        child.Exit();
        _memory.FreeRamPages.Should().Be(free);
    }

    [Fact]
    public void MremapOfDriverAreas()
    {
        (ulong a, Vma vma) = MapDriverArea(2, MapFlags.Shared, VmFlags.MixedMap);
        Pfn page = DriverPage(0x77);
        Insert(vma, a, page).Should().Be(0);
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => _mm.Mremap(a, 0, Page, MremapFlags.MayMove))).ShouldFailWith(Errno.EINVAL);
        before.ShouldBeUnchanged();

        ulong moved = _mm.Mremap(a, 2 * Page, 2 * Page, MremapFlags.MayMove | MremapFlags.Fixed, Base + (16 * Page));
        ReadBytes(_mm, moved, 1).Should().Equal(0x77);
        (_memory.Page(page).RefCount, _memory.Page(page).MapCount).Should().Be((2, 1));

        ulong p = _mm.MmapSpecial(0, Page, Protection.ReadWrite, MapFlags.Shared, VmFlags.PfnMap);
        MmSnapshot beforeGrow = MmSnapshot.Capture(_mm);
        ((Action)(() => _mm.Mremap(p, Page, 2 * Page, MremapFlags.MayMove))).ShouldFailWith(Errno.EFAULT);
        beforeGrow.ShouldBeUnchanged();
    }

    [Theory]
    [InlineData(VmFlags.None, MapFlags.Shared)]
    [InlineData(VmFlags.DontExpand, MapFlags.Shared)]
    [InlineData(VmFlags.PfnMap | VmFlags.MixedMap, MapFlags.Shared)]
    [InlineData(VmFlags.MixedMap | VmFlags.Shared, MapFlags.Shared)]
    [InlineData(VmFlags.MixedMap, MapFlags.Shared | MapFlags.Anonymous)]
    [InlineData(VmFlags.MixedMap, MapFlags.None)]
    public void MmapSpecialRefusesBadFlagsAndChangesNothing(VmFlags special, MapFlags flags)
    {
        MmSnapshot before = MmSnapshot.Capture(_mm);

        ((Action)(() => _mm.MmapSpecial(0, Page, Protection.ReadWrite, flags, special))).ShouldFailWith(Errno.EINVAL);

        before.ShouldBeUnchanged();
        _mm.VmaCount.Should().Be(0);
    }

    [Fact]
    public void ADriverAreaIsNotAnonymousMemory()
    {
        (ulong a, Vma vma) = MapDriverArea(1, MapFlags.Private, VmFlags.MixedMap);

        (vma.IsSpecial, vma.IsAnonymous).Should().Be((true, false));
        ((Action)(() => _mm.Madvise(a, Page, Advice.Free))).ShouldFailWith(Errno.EINVAL);
        ulong p = _mm.MmapSpecial(0, Page, Protection.ReadWrite, MapFlags.Shared, VmFlags.PfnMap);
        ((Action)(() => _mm.Madvise(p, Page, Advice.DontNeed))).ShouldFailWith(Errno.EINVAL);
    }
}
