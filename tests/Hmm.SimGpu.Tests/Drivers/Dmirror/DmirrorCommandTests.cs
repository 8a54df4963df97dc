using FluentAssertions;
using Hmm.Drivers;
using Xunit;

namespace Hmm.SimGpu.Tests.Drivers.Dmirror;

/// <summary>Each command's success path, with the kernel test driver's counters.</summary>
public sealed class DmirrorCommandTests
{
    private const int Pages = 16;

    [Fact]
    public async Task ReadFaultsTheRangeInOneRoundThenReadsWithoutFaults()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);

        var command = new DmirrorCommand { Address = address, Pages = Pages, CPages = 99, Faults = 99 };
        var buffer = new byte[Pages * PageSize.Bytes];
        machine.Mirror.Read(ref command, buffer).Should().Be(Errno.None);
        command.CPages.Should().Be(Pages);
        command.Faults.Should().Be(1);
        buffer.Should().Equal(data);
        machine.Mirror.AddressSpace.MappedPages.Should().Be(Pages);

        var again = new DmirrorCommand { Address = address, Pages = Pages };
        machine.Mirror.Read(ref again, buffer).Should().Be(Errno.None);
        again.Faults.Should().Be(0, "every page is mapped in the device page table now");
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task ReadOfUntouchedMemoryMapsTheZeroPage()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        var command = new DmirrorCommand { Address = address, Pages = Pages };
        var buffer = new byte[Pages * PageSize.Bytes];
        Array.Fill(buffer, (byte)0xAA);

        machine.Mirror.Read(ref command, buffer).Should().Be(Errno.None);
        buffer.Should().OnlyContain(b => b == 0);
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == (DmirrorSnapshot.Zero | DmirrorSnapshot.Read));
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task WriteFaultsWritablePagesAndTheCpuSeesTheData()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = DmirrorMachine.Pattern(Pages, 5);

        var command = new DmirrorCommand { Address = address, Pages = Pages };
        machine.Mirror.Write(ref command, data).Should().Be(Errno.None);
        command.CPages.Should().Be(Pages);
        command.Faults.Should().Be(1);
        machine.CpuRead(address, Pages).Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task WriteAfterReadFaultsAgainForTheReadOnlyEntries()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        var read = new DmirrorCommand { Address = address, Pages = Pages };
        machine.Mirror.Read(ref read, new byte[Pages * PageSize.Bytes]).Should().Be(Errno.None);

        var write = new DmirrorCommand { Address = address, Pages = Pages };
        machine.Mirror.Write(ref write, DmirrorMachine.Pattern(Pages, 2)).Should().Be(Errno.None);
        write.Faults.Should().Be(1, "zero-page entries are read-only, so the write faults the range in for writing");
        machine.CpuRead(address, Pages).Should().Equal(DmirrorMachine.Pattern(Pages, 2));
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task MigrateToDeviceMovesEveryPageAndReadsItBack()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);

        (Errno result, DmirrorCommand command, byte[] buffer) = machine.MigrateToDevice(address, Pages);
        result.Should().Be(Errno.None);
        command.CPages.Should().Be(Pages);
        command.Faults.Should().Be(0);
        buffer.Should().Equal(data);
        machine.Device.PagesAllocated.Should().Be(Pages);
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == (DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write));

        // The device reads them without a fault: its page table maps the device pages themselves.
        var read = new DmirrorCommand { Address = address, Pages = Pages };
        var readBuffer = new byte[Pages * PageSize.Bytes];
        machine.Mirror.Read(ref read, readBuffer).Should().Be(Errno.None);
        read.Faults.Should().Be(0);
        readBuffer.Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task MigrateToDeviceGivesHolesZeroedWritableDevicePages()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        (Errno result, DmirrorCommand command, byte[] buffer) = machine.MigrateToDevice(address, Pages);
        result.Should().Be(Errno.None);
        command.CPages.Should().Be(Pages);
        buffer.Should().OnlyContain(b => b == 0);
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == (DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write));
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task ACpuAccessFaultsOnePageBackThroughMigrateToRam()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);
        long before = machine.Clock.Now;

        var page = new byte[PageSize.Bytes];
        machine.Mm.Read(address + (3 * (ulong)PageSize.Bytes), page);
        page.Should().Equal(data.AsSpan(3 * PageSize.Bytes, PageSize.Bytes).ToArray());
        DmirrorSnapshot[] states = machine.Snapshot(address, Pages);
        states[3].Should().Be(DmirrorSnapshot.Write, "the page is an ordinary RAM page again");
        states.Count(s => s == (DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write)).Should().Be(Pages - 1);
        machine.Clock.Now.Should().BeGreaterThan(before, "the CPU fault and its copy are charged on the virtual clock");

        // The mirror dropped its entry of the page that left: the next device read faults once, for that page.
        var read = new DmirrorCommand { Address = address, Pages = Pages };
        var buffer = new byte[Pages * PageSize.Bytes];
        machine.Mirror.Read(ref read, buffer).Should().Be(Errno.None);
        read.Faults.Should().Be(1);
        buffer.Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task MigrateToSystemBringsThisDevicesPagesBack()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);

        var command = new DmirrorCommand { Address = address, Pages = Pages };
        machine.Mirror.MigrateToSystem(ref command).Should().Be(Errno.None);
        command.CPages.Should().Be(Pages);
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == DmirrorSnapshot.Write);
        machine.CpuRead(address, Pages).Should().Equal(data);
        machine.Device.PagesFreed.Should().Be(Pages);
        machine.Mirror.AddressSpace.MappedPages.Should().Be(0, "the migrated pages' entries were dropped");

        var again = new DmirrorCommand { Address = address, Pages = Pages };
        machine.Mirror.MigrateToSystem(ref again).Should().Be(Errno.None);
        again.CPages.Should().Be(0, "nothing of this device is left in the range");
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task SnapshotReportsEveryKindOfPage()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(6);
        machine.Mm.Write(address + (1 * (ulong)PageSize.Bytes), new byte[] { 1 });   // page 1: written
        machine.Mm.Read(address + (2 * (ulong)PageSize.Bytes), new byte[1]);        // page 2: the zero page
        machine.Mm.Write(address + (3 * (ulong)PageSize.Bytes), new byte[] { 3 });
        machine.Mm.Mprotect(address + (3 * (ulong)PageSize.Bytes), PageSize.Bytes, Protection.Read);   // page 3: read-only
        machine.MigrateToDevice(address + (4 * (ulong)PageSize.Bytes), 1).Result.Should().Be(Errno.None);   // page 4: device
        machine.Mm.Munmap(address + (5 * (ulong)PageSize.Bytes), PageSize.Bytes);  // page 5: no area

        var command = new DmirrorCommand { Address = address, Pages = 6 };
        var states = new byte[6];
        machine.Mirror.Snapshot(ref command, states).Should().Be(Errno.None);
        command.CPages.Should().Be(6);
        states.Select(s => (DmirrorSnapshot)s).Should().Equal(
            DmirrorSnapshot.None,
            DmirrorSnapshot.Write,
            DmirrorSnapshot.Zero | DmirrorSnapshot.Read,
            DmirrorSnapshot.Read,
            DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write,
            DmirrorSnapshot.Error);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task ExclusiveMapsAtomicEntriesUntilTheCpuTouchesThePages()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(4);
        byte[] data = machine.Fill(address, 4);

        var command = new DmirrorCommand { Address = address, Pages = 4 };
        var buffer = new byte[4 * PageSize.Bytes];
        machine.Mirror.Exclusive(ref command, buffer).Should().Be(Errno.None);
        command.CPages.Should().Be(4);
        buffer.Should().Equal(data);

        var check = new DmirrorCommand { Address = address, Pages = 4, CPages = 7 };
        machine.Mirror.CheckExclusive(ref check).Should().Be(Errno.EPERM);
        check.CPages.Should().Be(7, "an error leaves the command as it was");

        machine.CpuRead(address, 4).Should().Equal(data);   // the CPU access revokes the device's exclusive access
        var after = new DmirrorCommand { Address = address, Pages = 4, CPages = 7 };
        machine.Mirror.CheckExclusive(ref after).Should().Be(Errno.None);
        after.CPages.Should().Be(0);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task AWriteThroughAnAtomicEntryFaultsFirstAsInTheKernel()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(2);
        machine.Fill(address, 2);
        var command = new DmirrorCommand { Address = address, Pages = 2 };
        machine.Mirror.Exclusive(ref command, new byte[2 * PageSize.Bytes]).Should().Be(Errno.None);

        var write = new DmirrorCommand { Address = address, Pages = 2 };
        byte[] data = DmirrorMachine.Pattern(2, 9);
        machine.Mirror.Write(ref write, data).Should().Be(Errno.None);
        write.Faults.Should().Be(1);
        machine.CpuRead(address, 2).Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task ReleaseEvictsEveryPageOfTheDeviceWithItsData()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);
        long free = machine.Gpu.LocalMemory.FreePages;

        var command = new DmirrorCommand { Address = address, Pages = 1, CPages = 5, Faults = 5 };
        machine.Mirror.Release(ref command).Should().Be(Errno.None);
        command.CPages.Should().Be(0);
        command.Faults.Should().Be(0);
        machine.Gpu.LocalMemory.FreePages.Should().Be(free + Pages);
        machine.Device.PagesFreed.Should().Be(machine.Device.PagesAllocated);
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == DmirrorSnapshot.Write);
        machine.CpuRead(address, Pages).Should().Equal(data);

        // The device memory is still there: the range migrates again.
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task MmapOfTheDeviceFileGivesZeroedReadOnlyPagesThatDoNotMigrate()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Device.MmapDeviceFile(machine.Mm, 2);
        machine.CpuRead(address, 2).Should().OnlyContain(b => b == 0);
        machine.Snapshot(address, 2).Should().OnlyContain(s => s == DmirrorSnapshot.Read);

        var command = new DmirrorCommand { Address = address, Pages = 2 };
        machine.Mirror.MigrateToDevice(ref command, new byte[2 * PageSize.Bytes]).Should().Be(Errno.EINVAL);
        machine.Mm.Munmap(address, 2 * (ulong)PageSize.Bytes);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task CoherentPagesStayOnTheDeviceWhenTheCpuReadsThem()
    {
        var machine = new DmirrorMachine(MemoryType.DeviceCoherent);
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == (DmirrorSnapshot.DeviceCoherentLocal | DmirrorSnapshot.Write));

        machine.CpuRead(address, Pages).Should().Equal(data);
        machine.Snapshot(address, Pages).Should().OnlyContain(
            s => s == (DmirrorSnapshot.DeviceCoherentLocal | DmirrorSnapshot.Write), "coherent memory is CPU-accessible: no migrate_to_ram");

        var command = new DmirrorCommand { Address = address, Pages = Pages };
        machine.Mirror.MigrateToSystem(ref command).Should().Be(Errno.None);
        command.CPages.Should().Be(Pages);
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == DmirrorSnapshot.Write);
        machine.CpuRead(address, Pages).Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task AnotherDevicesPageIsRemoteAndNotSelectedForMigrationToSystem()
    {
        var machine = new DmirrorMachine(devices: 2);
        using Hmm.Drivers.Dmirror other = machine.Devices[1].Open(machine.Mm);
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);

        var command = new DmirrorCommand { Address = address, Pages = Pages };
        other.MigrateToSystem(ref command).Should().Be(Errno.None);
        command.CPages.Should().Be(0, "device 0's pages are remote to device 1");
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == (DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write));

        // Device 1 reads them after faulting them back to RAM, and can then migrate them to itself.
        var read = new DmirrorCommand { Address = address, Pages = Pages };
        var buffer = new byte[Pages * PageSize.Bytes];
        other.Read(ref read, buffer).Should().Be(Errno.None);
        buffer.Should().Equal(data);
        machine.MigrateToDevice(address, Pages, other).Result.Should().Be(Errno.None);
        machine.Snapshot(address, Pages).Should().OnlyContain(
            s => s == DmirrorSnapshot.None, "a snapshot does not fault, and another device's private page is not reported without a fault");
        machine.Snapshot(address, Pages, other).Should().OnlyContain(s => s == (DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write));
        other.Dispose();
        machine.CpuRead(address, Pages).Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task TheFailAllocationFlagFailsOneAllocationOnly()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(4);
        byte[] data = machine.Fill(address, 4);
        machine.Mirror.SetFlags(DmirrorFlags.FailAllocation).Should().Be(Errno.None);
        machine.Mirror.Flags.Should().Be(DmirrorFlags.FailAllocation);

        var command = new DmirrorCommand { Address = address, Pages = 4, CPages = 3 };
        var buffer = new byte[4 * PageSize.Bytes];
        machine.Mirror.MigrateToDevice(ref command, buffer).Should().Be(Errno.ENOENT, "the first page did not move, so the read-back misses it");
        command.CPages.Should().Be(3);
        buffer.Should().OnlyContain(b => b == 0);
        machine.Mirror.Flags.Should().Be(DmirrorFlags.None, "the flag is one-shot");
        machine.Snapshot(address, 4).Should().Equal(
            DmirrorSnapshot.Write,
            DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write,
            DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write,
            DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write);

        machine.MigrateToDevice(address, 4).Result.Should().Be(Errno.None);
        machine.CpuRead(address, 4).Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task AMetadataOnlyMachineMigratesWithoutMovingBytes()
    {
        var machine = new DmirrorMachine(storePageData: false);
        ulong address = machine.Map(Pages);
        (Errno result, DmirrorCommand command, _) = machine.MigrateToDevice(address, Pages);
        result.Should().Be(Errno.None);
        command.CPages.Should().Be(Pages);
        var back = new DmirrorCommand { Address = address, Pages = Pages };
        machine.Mirror.MigrateToSystem(ref back).Should().Be(Errno.None);
        back.CPages.Should().Be(Pages);
        await machine.TeardownAsync();
    }
}
