using FluentAssertions;
using Hmm.Drivers;
using Xunit;

namespace Hmm.Conformance;

/// <summary>
/// The selftests' <c>FIXTURE(hmm2)</c>: two open dmirror devices, <c>fd0</c> and <c>fd1</c>, in the variants
/// <see cref="Hmm2DevicePrivate"/> (units 0 and 1) and <see cref="Hmm2DeviceCoherent"/> (units 2 and 3).
/// </summary>
/// <remarks>Teardown closes fd0, then fd1 (each close must return 0), then checks that nothing leaked.</remarks>
public abstract class Hmm2Tests : IAsyncDisposable
{
    private const int Page = PageSize.Bytes;

    private readonly HmmMachine _machine = new();
    private readonly int _unit0;
    private readonly Dmirror _fd0;
    private readonly Dmirror _fd1;

    private protected Hmm2Tests(int unit0, int unit1)
    {
        _unit0 = unit0;
        _fd0 = _machine.Open(unit0);
        _fd1 = _machine.Open(unit1);
    }

    private Mm Process => _machine.Process;

    public async ValueTask DisposeAsync()
    {
        _machine.Close(_fd0);
        _machine.Close(_fd1);
        await _machine.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    [Fact]
    public void migrate_mixed()
    {
        const ulong Npages = 6;
        HmmBuffer buffer = _machine.Map(Npages * Page, (int)(Npages * Page), Protection.None, MapFlags.Private | MapFlags.Anonymous);
        ulong p = buffer.Ptr;

        // A protected area cannot migrate.
        Ioctl.MigrateToDevice(_fd1, buffer, Npages).Should().Be(Ioctl.Neg(Errno.EINVAL));

        // Nor a range with a hole after its first page.
        Process.Munmap(p + Page, Page);
        Ioctl.MigrateToDevice(_fd1, buffer, 3).Should().Be(Ioctl.Neg(Errno.EINVAL));

        MakeMixedPages(p, readWritePages: 2, writtenPages: 2);

        // Pages 2 to 5 migrate to device 1.
        buffer.Ptr = p + (2 * Page);
        Ioctl.MigrateToDevice(_fd1, buffer, 4).Should().Be(0);
        buffer.CPages.Should().Be(4);

        // Page 5 is on device 1, which a migration to device 0 (selecting system memory) does not take.
        buffer.Ptr = p + (5 * Page);
        Ioctl.MigrateToDevice(_fd0, buffer, 1).Should().Be(Ioctl.Neg(Errno.ENOENT));

        buffer.Ptr = p;
        _machine.Free(buffer);
    }

    [Fact]
    public void snapshot()
    {
        const ulong Npages = 7;

        // The kernel's mirror is malloc(npages), 7 bytes, which its 1-page migrations overrun by copying a whole
        // page into it; this buffer has room for what each command copies.
        HmmBuffer buffer = _machine.Map(Npages * Page, (int)(Npages * Page), Protection.None, MapFlags.Private | MapFlags.Anonymous);
        ulong p = buffer.Ptr;

        Process.Munmap(p + Page, Page);
        MakeMixedPages(p, readWritePages: 3, writtenPages: 1);

        buffer.Ptr = p + (5 * Page);
        Ioctl.MigrateToDevice(_fd0, buffer, 1).Should().Be(0);
        buffer.CPages.Should().Be(1);

        buffer.Ptr = p + (6 * Page);
        Ioctl.MigrateToDevice(_fd1, buffer, 1).Should().Be(0);
        buffer.CPages.Should().Be(1);

        buffer.Ptr = p;
        Ioctl.Cmd(_fd0, DmirrorRequest.Snapshot, buffer, Npages).Should().Be(0);
        buffer.CPages.Should().Be(Npages);

        byte[] m = buffer.Mirror;
        m[0].Should().Be((byte)DmirrorSnapshot.Error, "page 0 is in a PROT_NONE area");
        m[1].Should().Be((byte)DmirrorSnapshot.Error, "page 1 is not mapped");
        m[2].Should().Be(Prot(DmirrorSnapshot.Zero, DmirrorSnapshot.Read), "page 2 is the zero page");
        m[3].Should().Be((byte)DmirrorSnapshot.Read, "page 3 is read-only");
        m[4].Should().Be((byte)DmirrorSnapshot.Write, "page 4 is writable");
        if (!HmmMachine.IsCoherent(_unit0))
        {
            m[5].Should().Be(Prot(DmirrorSnapshot.DevicePrivateLocal, DmirrorSnapshot.Write), "page 5 is on device 0");
            m[6].Should().Be((byte)DmirrorSnapshot.None, "page 6 is another device's private page, which a snapshot without faulting cannot see");
        }
        else
        {
            m[5].Should().Be(Prot(DmirrorSnapshot.DeviceCoherentLocal, DmirrorSnapshot.Write), "page 5 is on device 0");
            m[6].Should().Be(Prot(DmirrorSnapshot.DeviceCoherentRemote, DmirrorSnapshot.Write), "page 6 is on device 1");
        }

        _machine.Free(buffer);
    }

    [Fact]
    public void double_map()
    {
        const ulong Npages = 6;
        const int Ints = (int)(Npages * Page / sizeof(int));
        HmmBuffer buffer = _machine.Map(Npages * Page, (int)(Npages * Page), Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        Cpu.WriteInts(Process, buffer.Ptr, Ints, static i => i);
        Process.Mprotect(buffer.Ptr, Npages * Page, Protection.Read);

        // Device 0, then device 1, read the same memory. The mirror is cleared before each command so that each
        // check is the command's own.
        ReadAndCheck(_fd0, buffer, Npages, "device 0");
        ReadAndCheck(_fd1, buffer, Npages, "device 1");

        buffer.Mirror.AsSpan().Clear();
        Ioctl.MigrateToDevice(_fd1, buffer, Npages).Should().Be(0);
        buffer.CPages.Should().Be(Npages);

        // Device 0 reads pages now on device 1 (a private page of another device faults back to RAM).
        ReadAndCheck(_fd0, buffer, Npages, "device 0 after the migration to device 1");

        _machine.Free(buffer);
    }

    private static byte Prot(DmirrorSnapshot type, DmirrorSnapshot access) => (byte)((byte)type | (byte)access);

    private static void ReadAndCheck(Dmirror fd, HmmBuffer buffer, ulong npages, string who)
    {
        buffer.Mirror.AsSpan().Clear();
        Ioctl.Cmd(fd, DmirrorRequest.Read, buffer, npages).Should().Be(0, who);
        buffer.CPages.Should().Be(npages, who);
        buffer.Faults.Should().Be(1, who);
        Expect.Ints(buffer.MirrorInts[..(int)(npages * Page / sizeof(int))], static i => i, $"what {who} read");
    }

    /// <summary>
    /// The common set-up of migrate_mixed and snapshot in a PROT_NONE area: page 2 read-only, read by the CPU (the
    /// zero page; the value read plus 3 is 3), page 3 written with that value then made read-only, and
    /// <paramref name="readWritePages"/> read-write pages from page 4, the first <paramref name="writtenPages"/> of
    /// them written with the value.
    /// </summary>
    private void MakeMixedPages(ulong p, int readWritePages, int writtenPages)
    {
        Process.Mprotect(p + (2 * Page), Page, Protection.Read);
        int val = Cpu.ReadInt(Process, p + (2 * Page)) + 3;
        val.Should().Be(3, "page 2 reads the zero page");

        Process.Mprotect(p + (3 * Page), Page, Protection.ReadWrite);
        Cpu.WriteInt(Process, p + (3 * Page), val);
        Process.Mprotect(p + (3 * Page), Page, Protection.Read);

        Process.Mprotect(p + (4 * Page), (ulong)readWritePages * Page, Protection.ReadWrite);
        for (int i = 0; i < writtenPages; i++)
        {
            Cpu.WriteInt(Process, p + ((ulong)(4 + i) * Page), val);
        }
    }
}
