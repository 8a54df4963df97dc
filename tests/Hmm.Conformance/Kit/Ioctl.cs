using FluentAssertions;
using Hmm.Drivers;

namespace Hmm.Conformance;

/// <summary>
/// The selftests' <c>hmm_dmirror_cmd</c>: issues one dmirror command for <c>npages</c> pages at
/// <see cref="HmmBuffer.Ptr"/> with <see cref="HmmBuffer.Mirror"/> as the user buffer, and returns 0 or the
/// negated errno. Only a successful command updates <see cref="HmmBuffer.CPages"/> and <see cref="HmmBuffer.Faults"/>,
/// because the kernel copies the command back to user space only on success; a failed one must leave the command's
/// counters as they were (the driver's contract for the same rule).
/// </summary>
internal static class Ioctl
{
    public static int Cmd(Dmirror fd, DmirrorRequest request, HmmBuffer buffer, ulong npages)
    {
        // The counters start as the buffer's previous ones, so that a failed command can be seen to leave them.
        var cmd = new DmirrorCommand { Address = buffer.Ptr, Pages = npages, CPages = buffer.CPages, Faults = buffer.Faults };
        int bytes = checked((int)(npages * PageSize.Bytes));
        Errno error = request switch
        {
            DmirrorRequest.Read => fd.Read(ref cmd, buffer.Mirror.AsSpan(0, bytes)),
            DmirrorRequest.Write => fd.Write(ref cmd, buffer.Mirror.AsSpan(0, bytes)),
            DmirrorRequest.MigrateToDevice => fd.MigrateToDevice(ref cmd, buffer.Mirror.AsSpan(0, bytes)),
            DmirrorRequest.MigrateToSystem => fd.MigrateToSystem(ref cmd),
            DmirrorRequest.Snapshot => fd.Snapshot(ref cmd, buffer.Mirror.AsSpan(0, checked((int)npages))),
            DmirrorRequest.Exclusive => fd.Exclusive(ref cmd, buffer.Mirror.AsSpan(0, bytes)),
            DmirrorRequest.CheckExclusive => fd.CheckExclusive(ref cmd),
            DmirrorRequest.Release => fd.Release(ref cmd),
            _ => throw new ArgumentOutOfRangeException(nameof(request)),
        };

        if (error != Errno.None)
        {
            cmd.CPages.Should().Be(buffer.CPages, $"{request} failed with {error}, so its command is not copied back");
            cmd.Faults.Should().Be(buffer.Faults, $"{request} failed with {error}, so its command is not copied back");
            return -(int)error;
        }

        buffer.CPages = cmd.CPages;
        buffer.Faults = cmd.Faults;
        return 0;
    }

    /// <summary><c>hmm_migrate_sys_to_dev</c>.</summary>
    public static int MigrateToDevice(Dmirror fd, HmmBuffer buffer, ulong npages) => Cmd(fd, DmirrorRequest.MigrateToDevice, buffer, npages);

    /// <summary><c>hmm_migrate_dev_to_sys</c>.</summary>
    public static int MigrateToSystem(Dmirror fd, HmmBuffer buffer, ulong npages) => Cmd(fd, DmirrorRequest.MigrateToSystem, buffer, npages);

    /// <summary>HMM_DMIRROR_FLAGS: the selftests pass the flags in <c>npages</c>; here they are the argument.</summary>
    public static int Flags(Dmirror fd, DmirrorFlags flags)
    {
        Errno error = fd.SetFlags(flags);
        return error == Errno.None ? 0 : -(int)error;
    }

    /// <summary>The negated errno, as the selftests compare return values (<c>-EFAULT</c> and so on).</summary>
    public static int Neg(Errno error) => -(int)error;
}
