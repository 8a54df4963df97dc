using FluentAssertions;
using Hmm.Drivers;
using Xunit;

namespace Hmm.Conformance;

// The scenarios written for huge pages. The simulator has no compound pages: it runs them as a kernel that can
// allocate no transparent huge page would (MADV_HUGEPAGE, MADV_NOHUGEPAGE and MADV_COLLAPSE have no simulator
// counterpart and are left out; under transparent_hugepage=never the first two return 0 and change nothing), with
// every page 4 KiB. Each assertion that holds without PMD mappings is kept; docs/conformance.md lists the rest.
public abstract partial class HmmTests
{
    private const ulong Pmd = HmmMachine.PmdBytes;
    private const ulong PmdPages = HmmMachine.PmdPages;
    private const int PmdInts = (int)(HmmMachine.PmdBytes / sizeof(int));

    [Fact]
    public void anon_write_huge()
    {
        HmmBuffer buffer = MapAnonymous(2 * Pmd, (int)Pmd, Protection.ReadWrite);
        buffer.Ptr = Align(buffer.Base, Pmd);
        Cpu.FillInts(buffer.MirrorInts, static i => i);

        Cmd(DmirrorRequest.Write, buffer, PmdPages).Should().Be(0);
        buffer.CPages.Should().Be(PmdPages);
        buffer.Faults.Should().Be(1);
        Expect.Ints(Cpu.ReadInts(Process, buffer.Ptr, PmdInts), static i => i, "buffer");

        _machine.Free(buffer);
    }

    [Fact(Skip = "hugetlbfs: the simulator has no huge pages, and the kernel skips this scenario when no default huge page is free")]
    public void anon_write_hugetlbfs()
    {
        // Skipped like the kernel's SKIP without free hugetlb pages; docs/conformance.md records it.
    }

    [Fact(Skip = "hugetlbfs: the simulator has no huge pages, and the kernel skips this scenario when no default huge page is free")]
    public void compound()
    {
        // Skipped like the kernel's SKIP without free hugetlb pages; docs/conformance.md records it.
    }

    [Fact]
    public void migrate_anon_huge_empty()
    {
        HmmBuffer buffer = MapAnonymous(2 * Pmd, (int)Pmd, Protection.Read);
        buffer.Mirror.AsSpan().Fill(0xFF);
        buffer.Ptr = Align(buffer.Base, Pmd);

        // Never touched: every page is a hole the migration fills with a zeroed device page.
        Ioctl.MigrateToDevice(_fd, buffer, PmdPages).Should().Be(0);
        buffer.CPages.Should().Be(PmdPages);
        Expect.Ints(buffer.MirrorInts, static _ => 0, "mirror");

        _machine.Free(buffer);
    }

    [Fact]
    public void migrate_anon_huge_zero()
    {
        HmmBuffer buffer = MapAnonymous(2 * Pmd, (int)Pmd, Protection.Read);
        buffer.Mirror.AsSpan().Fill(0xFF);
        buffer.Ptr = Align(buffer.Base, Pmd);

        // Without THP this installs the 4 KiB zero page at the first page (not the huge zero page).
        Cpu.ReadInt(Process, buffer.Ptr).Should().Be(0);

        Ioctl.MigrateToDevice(_fd, buffer, PmdPages).Should().Be(0);
        buffer.CPages.Should().Be(PmdPages);
        Expect.Ints(buffer.MirrorInts, static _ => 0, "mirror");
        Expect.Ints(Cpu.ReadInts(Process, buffer.Ptr, PmdInts), static _ => 0, "buffer faulted back");

        _machine.Free(buffer);
    }

    [Fact]
    public void migrate_anon_huge_free()
    {
        HmmBuffer buffer = MapAnonymous(2 * Pmd, (int)Pmd, Protection.ReadWrite);
        buffer.Mirror.AsSpan().Fill(0xFF);
        buffer.Ptr = Align(buffer.Base, Pmd);
        Cpu.WriteInts(Process, buffer.Ptr, PmdInts, static i => i);

        Ioctl.MigrateToDevice(_fd, buffer, PmdPages).Should().Be(0);
        buffer.CPages.Should().Be(PmdPages);
        Expect.Ints(buffer.MirrorInts, static i => i, "mirror");

        // madvise(MADV_FREE) over device-private (or coherent) pages returns 0.
        FluentActions.Invoking(() => Process.Madvise(buffer.Ptr, Pmd, Advice.Free)).Should().NotThrow();

        _machine.Free(buffer);
    }

    [Fact]
    public void migrate_anon_huge_fault()
    {
        HmmBuffer buffer = MapAnonymous(2 * Pmd, (int)Pmd, Protection.ReadWrite);
        buffer.Mirror.AsSpan().Fill(0xFF);
        buffer.Ptr = Align(buffer.Base, Pmd);
        Cpu.WriteInts(Process, buffer.Ptr, PmdInts, static i => i);

        // MADV_COLLAPSE is left out: there is no huge page to collapse into.
        Ioctl.MigrateToDevice(_fd, buffer, PmdPages).Should().Be(0);
        buffer.CPages.Should().Be(PmdPages);
        Expect.Ints(buffer.MirrorInts, static i => i, "mirror");

        if (!Coherent)
        {
            Cmd(DmirrorRequest.Snapshot, buffer, PmdPages).Should().Be(0);
            buffer.CPages.Should().Be(PmdPages);

            // The kernel expects DEV_PRIVATE_LOCAL | WRITE | PMD (0x26); with 4 KiB mappings there is no PMD bit.
            byte expected = Prot(DmirrorSnapshot.DevicePrivateLocal, DmirrorSnapshot.Write);
            int wrong = buffer.Mirror.AsSpan(0, (int)PmdPages).IndexOfAnyExcept(expected);
            wrong.Should().Be(-1, $"every page reads 0x{expected:x2} in the snapshot");

            // /proc/self/pagemap: each entry is a swap-type (device-private) entry, not present.
            for (ulong i = 0; i < PmdPages; i++)
            {
                Pte pte = Process.ReadPte(buffer.Ptr + (i * Page));
                pte.IsPresent.Should().BeFalse($"page {i} is on the device");
                pte.Kind.Should().Be(PteKind.DevicePrivate, $"page {i} has a device-private swap entry (PM_SWAP)");
            }
        }

        Expect.Ints(Cpu.ReadInts(Process, buffer.Ptr, PmdInts), static i => i, "buffer faulted back");

        _machine.Free(buffer);
    }

    [Fact]
    public void migrate_partial_unmap_fault()
    {
        // The kernel's use_thp = 0 runs (MADV_NOHUGEPAGE); its use_thp = 1 runs would be the same runs again here.
        ulong unmapSize = Pmd / 2;
        ulong[] offsets = [0, Pmd / 4, Pmd / 2];
        foreach (ulong offset in offsets)
        {
            string run = $"offset {offset}";
            HmmBuffer buffer = MapAnonymous(2 * Pmd, (int)Pmd, Protection.ReadWrite);
            buffer.Mirror.AsSpan().Fill(0xFF);
            buffer.Ptr = Align(buffer.Base, Pmd);
            Cpu.WriteInts(Process, buffer.Ptr, PmdInts, static i => i);

            Ioctl.MigrateToDevice(_fd, buffer, PmdPages).Should().Be(0, run);
            buffer.CPages.Should().Be(PmdPages, run);
            Expect.Ints(buffer.MirrorInts, static i => i, $"mirror, {run}");

            Process.Munmap(buffer.Ptr + offset, unmapSize);

            // Fault back what is still mapped: the ints before and after the hole.
            int before = (int)(offset / sizeof(int));
            int after = (int)((offset + unmapSize) / sizeof(int));
            Expect.Ints(Cpu.ReadInts(Process, buffer.Ptr, before), static i => i, $"buffer before the hole, {run}");
            Expect.Ints(Cpu.ReadInts(Process, buffer.Ptr + offset + unmapSize, PmdInts - after), static i => i, $"buffer after the hole, {run}", after);

            _machine.Free(buffer);
        }
    }

    [Fact]
    public void migrate_remap_fault()
    {
        // The kernel's use_thp = 0 runs: before x dont_unmap x offset, 12 of its 24.
        ulong[] offsets = [0, Pmd / 4, Pmd / 2];
        for (int before = 0; before < 2; before++)
        {
            for (int dontUnmap = 0; dontUnmap < 2; dontUnmap++)
            {
                foreach (ulong offset in offsets)
                {
                    string run = $"before={before} dont_unmap={dontUnmap} offset={offset}";
                    MremapFlags flags = MremapFlags.MayMove | MremapFlags.Fixed | (dontUnmap != 0 ? MremapFlags.DontUnmap : MremapFlags.None);

                    HmmBuffer buffer = MapAnonymous(8 * Pmd, (int)Pmd, Protection.ReadWrite);
                    buffer.Mirror.AsSpan().Fill(0xFF);
                    ulong map = Align(buffer.Base, Pmd);
                    Process.Munmap(map + Pmd, 2 * Pmd);
                    buffer.Ptr = map;
                    Cpu.WriteInts(Process, buffer.Ptr, PmdInts, static i => i);

                    ulong newPtr = 0;
                    if (before != 0)
                    {
                        newPtr = Process.Mremap(map, Pmd, Pmd, flags, map + Pmd + offset);
                        newPtr.Should().Be(map + Pmd + offset, run);
                        buffer.Ptr = newPtr;
                    }

                    Ioctl.MigrateToDevice(_fd, buffer, PmdPages).Should().Be(0, run);
                    buffer.CPages.Should().Be(PmdPages, run);
                    Expect.Ints(buffer.MirrorInts, static i => i, $"mirror, {run}");

                    if (before == 0)
                    {
                        newPtr = Process.Mremap(map, Pmd, Pmd, flags, map + Pmd + offset);
                        newPtr.Should().Be(map + Pmd + offset, run);
                        buffer.Ptr = newPtr;
                    }

                    Expect.Ints(Cpu.ReadInts(Process, buffer.Ptr, PmdInts), static i => i, $"buffer at the new address, {run}");

                    Process.Munmap(newPtr, Pmd);
                    _machine.Free(buffer);
                }
            }
        }
    }

    [Fact]
    public void migrate_anon_huge_err()
    {
        HmmBuffer buffer = MapAnonymous(2 * Pmd, (int)(2 * Pmd), Protection.ReadWrite);
        buffer.Mirror.AsSpan().Fill(0xFF);
        buffer.Ptr = Align(buffer.Base, Pmd);
        Cpu.WriteInts(Process, buffer.Ptr, PmdInts, static i => i);

        // The one-shot allocation failure. With a THP source the kernel falls back to 512 small device pages and
        // the migration succeeds; a 4 KiB source page has no fallback and is simply not migrated, so without THP
        // the first page stays in RAM, the read-back through the device page table finds it missing (-ENOENT),
        // and the mirror and counters are not copied back.
        Ioctl.Flags(_fd, DmirrorFlags.FailAllocation).Should().Be(0);
        buffer.CPages = ulong.MaxValue;
        Ioctl.MigrateToDevice(_fd, buffer, PmdPages).Should().Be(Ioctl.Neg(Errno.ENOENT));
        buffer.CPages.Should().Be(ulong.MaxValue, "a failed command is not copied back");
        Expect.Bytes(buffer.Mirror, 0xFF, "mirror after the failed migration");
        Process.ReadPte(buffer.Ptr).Kind.Should().Be(PteKind.Present, "the page whose allocation failed stayed in RAM");

        // Fault back a single page (ptr[2048], page 2).
        Cpu.ReadInt(Process, buffer.Ptr + (2048 * sizeof(int))).Should().Be(2048);

        // Unmap and map again to reset, then migrate without a failure.
        Process.Munmap(buffer.Base, buffer.Size);
        buffer.Base = Process.Mmap(0, 2 * Pmd, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        buffer.Ptr = Align(buffer.Base, Pmd);
        Cpu.WriteInts(Process, buffer.Ptr, PmdInts, static i => i);

        Ioctl.MigrateToDevice(_fd, buffer, PmdPages).Should().Be(0);
        buffer.CPages.Should().Be(PmdPages);

        // An allocation failure on the way back: the kernel's MIGRATE_TO_SYS returns 0 whatever its allocations
        // did. Without THP the first 4 KiB page consumes the flag and its allocation fails (VM_FAULT_OOM, ignored
        // here), so the whole round, the one PMD, gets no destination and stays on the device: cpages 0, flag
        // clear. The kernel asserts only the return code; the rest is the THP-less result, checked here.
        Ioctl.Flags(_fd, DmirrorFlags.FailAllocation).Should().Be(0);
        buffer.CPages = ulong.MaxValue;
        Ioctl.MigrateToSystem(_fd, buffer, PmdPages).Should().Be(0);
        buffer.CPages.Should().Be(0, "the failed round moved nothing");
        _fd.Flags.Should().Be(DmirrorFlags.None, "the failed allocation consumed the flag");
        Cmd(DmirrorRequest.Snapshot, buffer, 1).Should().Be(0);
        buffer.Mirror[0].Should().Be(
            Prot(Coherent ? DmirrorSnapshot.DeviceCoherentLocal : DmirrorSnapshot.DevicePrivateLocal, DmirrorSnapshot.Write),
            "the page whose allocation failed stayed on the device");
        Cpu.ReadInt(Process, buffer.Ptr + (2048 * sizeof(int))).Should().Be(2048);

        _machine.Free(buffer);
    }

    [Fact]
    public void migrate_anon_huge_zero_err()
    {
        HmmBuffer buffer = MapAnonymous(2 * Pmd, (int)(2 * Pmd), Protection.Read);
        buffer.Mirror.AsSpan().Fill(0xFF);
        buffer.Ptr = Align(buffer.Base, Pmd);

        // As in migrate_anon_huge_err: without THP the failed allocation leaves the first hole unmigrated.
        Ioctl.Flags(_fd, DmirrorFlags.FailAllocation).Should().Be(0);
        Ioctl.MigrateToDevice(_fd, buffer, PmdPages).Should().Be(Ioctl.Neg(Errno.ENOENT));
        Expect.Bytes(buffer.Mirror, 0xFF, "mirror after the failed migration");
        Cpu.ReadInt(Process, buffer.Ptr + (2048 * sizeof(int))).Should().Be(0);

        Process.Munmap(buffer.Base, buffer.Size);
        buffer.Base = Process.Mmap(0, 2 * Pmd, Protection.Read, MapFlags.Private | MapFlags.Anonymous);
        buffer.Ptr = Align(buffer.Base, Pmd);

        // The kernel reads ptr[0] through its old pointer, counting on the new mapping reusing the address;
        // the port reads the new mapping's first int, which installs the zero page there.
        Cpu.ReadInt(Process, buffer.Ptr).Should().Be(0);

        Ioctl.Flags(_fd, DmirrorFlags.FailAllocation).Should().Be(0);
        Ioctl.MigrateToDevice(_fd, buffer, PmdPages).Should().Be(Ioctl.Neg(Errno.ENOENT));
        Expect.Ints(Cpu.ReadInts(Process, buffer.Ptr, PmdInts), static _ => 0, "buffer faulted back");

        _machine.Free(buffer);
    }

    [Fact]
    public void benchmark_thp_migration()
    {
        // The kernel's MADV_NOHUGEPAGE runs at the small sizes (a quarter, a half, one and two PMDs; it also runs
        // 4, 8 and 128 PMDs). Only return codes are asserted, as in the kernel; the virtual times are printed.
        const int Iterations = 5;
        ulong[] sizes = [Pmd / 4, Pmd / 2, Pmd, 2 * Pmd];
        foreach (ulong size in sizes)
        {
            ulong npages = size / Page;
            HmmBuffer buffer = MapAnonymous(size, (int)size, Protection.ReadWrite);
            buffer.Mirror.AsSpan().Fill(0xFF);
            Cpu.WriteInts(Process, buffer.Ptr, (int)(size / sizeof(int)), static i => i & 0xFF);

            // Warm-up.
            Ioctl.MigrateToDevice(_fd, buffer, npages).Should().Be(0, $"warm-up to the device, {size} bytes");
            Ioctl.MigrateToSystem(_fd, buffer, npages).Should().Be(0, $"warm-up to the system, {size} bytes");

            long toDevice = 0;
            long toSystem = 0;
            for (int i = 0; i < Iterations; i++)
            {
                long start = _machine.Clock.Now;
                Ioctl.MigrateToDevice(_fd, buffer, npages).Should().Be(0, $"iteration {i} to the device, {size} bytes");
                long middle = _machine.Clock.Now;
                Ioctl.MigrateToSystem(_fd, buffer, npages).Should().Be(0, $"iteration {i} to the system, {size} bytes");
                toDevice += middle - start;
                toSystem += _machine.Clock.Now - middle;
            }

            _output.WriteLine($"{size / 1024} KiB without THP: Sys->Dev {toDevice / Iterations} ns, Dev->Sys {toSystem / Iterations} ns of virtual time per migration");
            _machine.Free(buffer);
        }
    }
}
