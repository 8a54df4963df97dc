using FluentAssertions;
using Hmm.Drivers;
using Xunit;

namespace Hmm.Conformance;

// Device-exclusive (atomic) access, and get_user_pages / pin_user_pages on migrated memory.
public abstract partial class HmmTests
{
    [Fact]
    public void exclusive()
    {
        HmmBuffer buffer = MapAnonymous(Size, (int)Size, Protection.ReadWrite);
        Cpu.WriteInts(Process, buffer.Ptr, SizeInts, static i => i);

        Cmd(DmirrorRequest.Exclusive, buffer, Npages).Should().Be(0);
        buffer.CPages.Should().Be(Npages);
        Expect.Ints(buffer.MirrorInts, static i => i, "mirror");

        // The CPU's accesses restore the pages and revoke the device's atomic entries.
        IncrementAndCheck(Process, buffer.Ptr, "buffer");
        Cmd(DmirrorRequest.CheckExclusive, buffer, Npages).Should().Be(0);

        _machine.Free(buffer);
    }

    [Fact]
    public void exclusive_mprotect()
    {
        HmmBuffer buffer = MapAnonymous(Size, (int)Size, Protection.ReadWrite);
        Cpu.WriteInts(Process, buffer.Ptr, SizeInts, static i => i);

        Cmd(DmirrorRequest.Exclusive, buffer, Npages).Should().Be(0);
        buffer.CPages.Should().Be(Npages);
        Expect.Ints(buffer.MirrorInts, static i => i, "mirror");

        Process.Mprotect(buffer.Ptr, Size, Protection.Read);
        Cmd(DmirrorRequest.Write, buffer, Npages).Should().Be(Ioctl.Neg(Errno.EPERM));

        _machine.Free(buffer);
    }

    [Fact]
    public void hmm_gup_test()
    {
        const ulong Pages = 4;
        const int Ints = (int)(Pages * Page / sizeof(int));
        HmmBuffer buffer = MapAnonymous(Pages * Page, (int)(Pages * Page), Protection.ReadWrite);
        Cpu.WriteInts(Process, buffer.Ptr, Ints, static i => i);

        Ioctl.MigrateToDevice(_fd, buffer, Pages).Should().Be(0);
        buffer.CPages.Should().Be(Pages);
        Expect.Ints(buffer.MirrorInts, static i => i, "mirror");

        // The gup_test ioctls, one page each, all with FOLL_WRITE: GUP_BASIC_TEST and GUP_FAST_BENCHMARK take and
        // drop references; PIN_FAST_BENCHMARK (FOLL_LONGTERM) and PIN_LONGTERM_BENCHMARK pin long-term and unpin.
        GetAndPut(buffer.Ptr);
        GetAndPut(buffer.Ptr + Page);
        PinLongTermAndUnpin(buffer.Ptr + (2 * Page));
        PinLongTermAndUnpin(buffer.Ptr + (3 * Page));

        Cmd(DmirrorRequest.Snapshot, buffer, Pages).Should().Be(0);
        buffer.CPages.Should().Be(Pages);

        // A plain reference does not move coherent memory; it does fault a private page back. A long-term pin
        // moves both kinds out of device memory.
        byte referenced = Coherent ? Prot(DmirrorSnapshot.DeviceCoherentLocal, DmirrorSnapshot.Write) : (byte)DmirrorSnapshot.Write;
        buffer.Mirror[0].Should().Be(referenced);
        buffer.Mirror[1].Should().Be(referenced);
        buffer.Mirror[2].Should().Be((byte)DmirrorSnapshot.Write);
        buffer.Mirror[3].Should().Be((byte)DmirrorSnapshot.Write);
        Expect.Ints(Cpu.ReadInts(Process, buffer.Ptr, Ints), static i => i, "buffer");

        _machine.Free(buffer);
    }

    private void GetAndPut(ulong address)
    {
        Span<Pfn> pages = stackalloc Pfn[1];
        Process.GetUserPages(address, GupFlags.Write, pages).Should().Be(1, $"get_user_pages at 0x{address:x}");
        _machine.Memory.PutPage(pages[0]);
    }

    private void PinLongTermAndUnpin(ulong address)
    {
        Span<Pfn> pages = stackalloc Pfn[1];
        Process.PinUserPages(address, GupFlags.Write | GupFlags.LongTerm, pages).Should().Be(1, $"pin_user_pages at 0x{address:x}");
        Process.UnpinUserPages(pages);
    }
}
