using FluentAssertions;
using Hmm.Drivers;
using Xunit;

namespace Hmm.Conformance;

// The scenarios that fork. The child is Mm.Fork of the test process; its "open("/dev/hmm_dmirror0")" is a new
// Dmirror of unit 0 on the child's mm (device 0 also in the coherent variants, as in the selftests), its _exit
// is Mm.Exit, and the parent's waitpid is the child's exit having completed.
public abstract partial class HmmTests
{
    [Fact]
    public void anon_write_child()
    {
        for (int migrate = 0; migrate < 2; migrate++)
        {
            for (int useThp = 0; useThp < 2; useThp++)
            {
                string run = $"migrate={migrate} use_thp={useThp}";
                ulong npages = useThp != 0 ? HmmMachine.PmdPages : Npages;
                ulong size = npages * Page;
                int ints = (int)(size / sizeof(int));

                HmmBuffer buffer = MapAnonymous(2 * size, (int)size, Protection.ReadWrite);
                if (useThp != 0)
                {
                    // The PMD-aligned part of the double-size mapping; its MADV_HUGEPAGE has no effect here.
                    buffer.Ptr = Align(buffer.Base, size);
                }

                Cpu.WriteInts(Process, buffer.Ptr, ints, static i => i);
                Cpu.FillInts(buffer.MirrorInts, static i => -i);

                if (migrate != 0)
                {
                    Ioctl.MigrateToDevice(_fd, buffer, npages).Should().Be(0, run);
                    buffer.CPages.Should().Be(npages, run);
                }

                Mm child = _machine.Fork(Process);

                // Child: it sees the parent's values, then its own mirror of its own mm writes -i.
                Expect.Ints(Cpu.ReadInts(child, buffer.Ptr, ints), static i => i, $"child's buffer, {run}");
                if (migrate == 0)
                {
                    Expect.Ints(buffer.MirrorInts, static i => -i, $"child's mirror, {run}");
                }

                Dmirror childFd = _machine.Open(0, child);
                Ioctl.Cmd(childFd, DmirrorRequest.Write, buffer, npages).Should().Be(0, run);
                buffer.CPages.Should().Be(npages, run);
                buffer.Faults.Should().Be(1, run);
                if (migrate == 0)
                {
                    Expect.Ints(Cpu.ReadInts(child, buffer.Ptr, ints), static i => -i, $"child's buffer after the device write, {run}");
                }

                _machine.Close(childFd);
                _machine.Exit(child);
                child.IsAlive.Should().BeFalse(run);

                // Parent: copy-on-write kept its buffer.
                Expect.Ints(Cpu.ReadInts(Process, buffer.Ptr, ints), static i => i, $"parent's buffer, {run}");
                _machine.Free(buffer);
            }
        }
    }

    [Fact]
    public void anon_write_child_shared()
    {
        HmmBuffer buffer = _machine.Map(Size, (int)Size, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous);
        Cpu.WriteInts(Process, buffer.Ptr, SizeInts, static i => i);
        Cpu.FillInts(buffer.MirrorInts, static i => -i);

        Mm child = _machine.Fork(Process);
        Expect.Ints(Cpu.ReadInts(child, buffer.Ptr, SizeInts), static i => i, "child's buffer");
        Expect.Ints(buffer.MirrorInts, static i => -i, "child's mirror");

        Dmirror childFd = _machine.Open(0, child);
        Ioctl.Cmd(childFd, DmirrorRequest.Write, buffer, Npages).Should().Be(0);
        buffer.CPages.Should().Be(Npages);
        buffer.Faults.Should().Be(1);
        Expect.Ints(Cpu.ReadInts(child, buffer.Ptr, SizeInts), static i => -i, "child's buffer after the device write");
        _machine.Close(childFd);
        _machine.Exit(child);
        child.IsAlive.Should().BeFalse();

        // Parent: shared memory, no copy-on-write, so it sees the child's device write.
        Expect.Ints(Cpu.ReadInts(Process, buffer.Ptr, SizeInts), static i => -i, "parent's buffer");
        _machine.Free(buffer);
    }

    [Fact]
    public void exclusive_cow()
    {
        HmmBuffer buffer = MapAnonymous(Size, (int)Size, Protection.ReadWrite);
        Cpu.WriteInts(Process, buffer.Ptr, SizeInts, static i => i);

        Cmd(DmirrorRequest.Exclusive, buffer, Npages).Should().Be(0);
        buffer.CPages.Should().Be(Npages);

        Mm child = _machine.Fork(Process);

        // Both processes read each int, increment it, and see their own increments (copy-on-write).
        IncrementAndCheck(child, buffer.Ptr, "child");
        _machine.Exit(child);
        child.IsAlive.Should().BeFalse("the child exited with status 0");
        IncrementAndCheck(Process, buffer.Ptr, "parent");

        _machine.Free(buffer);
    }

    [Fact]
    public void hmm_cow_in_device()
    {
        const ulong Pages = 4;
        const int Ints = (int)(Pages * Page / sizeof(int));
        HmmBuffer buffer = MapAnonymous(Pages * Page, (int)(Pages * Page), Protection.ReadWrite);
        Cpu.WriteInts(Process, buffer.Ptr, Ints, static i => i);

        Ioctl.MigrateToDevice(_fd, buffer, Pages).Should().Be(0);
        buffer.CPages.Should().Be(Pages);

        // The child only spins until the parent kills it.
        Mm child = _machine.Fork(Process);

        // The parent's writes break copy-on-write; a device-private page migrates back to RAM first.
        Cpu.WriteInts(Process, buffer.Ptr, Ints, static i => i);

        // kill(pid, SIGKILL) and waitpid: the child's address space goes.
        _machine.Exit(child);
        child.IsAlive.Should().BeFalse("the killed child is reaped");

        Cmd(DmirrorRequest.Snapshot, buffer, Pages).Should().Be(0);
        buffer.CPages.Should().Be(Pages);
        for (int i = 0; i < (int)Pages; i++)
        {
            buffer.Mirror[i].Should().Be((byte)DmirrorSnapshot.Write, $"page {i} is the parent's own writable RAM page");
        }

        _machine.Free(buffer);
    }

    /// <summary>The selftests' <c>ASSERT_EQ(ptr[i]++, i)</c> loop followed by <c>ASSERT_EQ(ptr[i], i + 1)</c>.</summary>
    private static void IncrementAndCheck(Mm mm, ulong address, string who)
    {
        Expect.Ints(Cpu.ReadInts(mm, address, SizeInts), static i => i, $"{who}'s buffer before the increments");
        Cpu.WriteInts(mm, address, SizeInts, static i => i + 1);
        Expect.Ints(Cpu.ReadInts(mm, address, SizeInts), static i => i + 1, $"{who}'s buffer after the increments");
    }
}
