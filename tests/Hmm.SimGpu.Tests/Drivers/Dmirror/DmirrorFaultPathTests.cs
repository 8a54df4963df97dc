using FluentAssertions;
using Hmm.Drivers;
using Xunit;

namespace Hmm.SimGpu.Tests.Drivers.Dmirror;

/// <summary>The failure paths of migrate_to_ram, of a migration to System RAM and of the device file's mmap.</summary>
public sealed class DmirrorFaultPathTests
{
    private const int Pages = 4;

    [Fact]
    public async Task ACpuFaultWithoutARamPageIsOutOfMemoryAndTheDataStaysOnTheDevice()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);

        machine.Memory.FaultInjection.FailNext(FaultPoint.PageAllocation);
        Action read = () => machine.CpuRead(address, 1);
        read.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == (DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write));

        machine.CpuRead(address, Pages).Should().Equal(data, "the next access faults the page back");
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task ACpuFaultUnderFailAllocationIsOutOfMemoryAndConsumesTheFlag()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);
        machine.Mirror.SetFlags(DmirrorFlags.FailAllocation).Should().Be(Errno.None);
        long freed = machine.Device.PagesFreed;

        // dmirror_devmem_fault_alloc_and_copy returns VM_FAULT_OOM; the core turns it into ENOMEM for the access.
        Action read = () => machine.CpuRead(address, 1);
        read.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        machine.Mirror.Flags.Should().Be(DmirrorFlags.None, "the failure is one-shot");
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == (DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write));
        machine.Device.PagesFreed.Should().Be(freed, "no device page was given up");
        machine.Mirror.AddressSpace.MappedPages.Should().Be(Pages, "the failed fault erased no device entry");

        var deviceRead = new DmirrorCommand { Address = address, Pages = Pages };
        var buffer = new byte[Pages * PageSize.Bytes];
        machine.Mirror.Read(ref deviceRead, buffer).Should().Be(Errno.None);
        buffer.Should().Equal(data, "the page kept its data on the device");
        deviceRead.Faults.Should().Be(0);

        machine.CpuRead(address, Pages).Should().Equal(data, "with the flag consumed the next access faults the pages back");
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task MigrateToSystemUnderFailAllocationLeavesThatRoundOnTheDeviceAndReturnsSuccess()
    {
        // Four pages across a 2 MiB boundary: two migration rounds of two pages each.
        const ulong Boundary = 0x4000_0000;
        var machine = new DmirrorMachine();
        ulong address = machine.Mm.Mmap(Boundary - (2 * (ulong)PageSize.Bytes), Pages * (ulong)PageSize.Bytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);
        machine.Mirror.SetFlags(DmirrorFlags.FailAllocation).Should().Be(Errno.None);

        // The kernel's MIGRATE_TO_SYS ignores the VM_FAULT_OOM of the first round, whose pages get no destination
        // (migrate_vma_finalize restores them), moves the second round and returns 0 with cpages = 2.
        var command = new DmirrorCommand { Address = address, Pages = Pages, CPages = 9 };
        machine.Mirror.MigrateToSystem(ref command).Should().Be(Errno.None);
        command.CPages.Should().Be(2);
        command.Faults.Should().Be(0);
        machine.Mirror.Flags.Should().Be(DmirrorFlags.None, "the failure is one-shot");
        machine.Snapshot(address, Pages).Should().Equal(
            DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write,
            DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write,
            DmirrorSnapshot.Write,
            DmirrorSnapshot.Write);
        machine.Device.PagesFreed.Should().Be(2);
        machine.Mirror.AddressSpace.MappedPages.Should().Be(2, "the first round's device entries stay");
        machine.CpuRead(address, Pages).Should().Equal(data);

        await machine.TeardownAsync();
    }

    [Fact]
    public async Task ACpuFaultWhoseCopyFailsIsABusErrorAndTheDataStaysOnTheDevice()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);

        machine.Gpu.Injection.FailNextCopies(1);
        Action read = () => machine.CpuRead(address, 1);
        read.Should().Throw<SegmentationFaultException>();
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == (DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write));
        machine.CpuRead(address, Pages).Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task MigrateToSystemWithoutARamPageReturnsEnomemAndKeepsTheRestOnTheDevice()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);

        machine.Memory.FaultInjection.FailNext(FaultPoint.PageAllocation, skip: 2);
        var command = new DmirrorCommand { Address = address, Pages = Pages, CPages = 9 };
        machine.Mirror.MigrateToSystem(ref command).Should().Be(Errno.ENOMEM);
        command.CPages.Should().Be(9);
        machine.Snapshot(address, Pages).Should().Equal(
            DmirrorSnapshot.Write,
            DmirrorSnapshot.Write,
            DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write,
            DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write);
        machine.CpuRead(address, Pages).Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task AFailedMmapOfTheDeviceFileLeavesNothingMapped()
    {
        var machine = new DmirrorMachine();
        ulong freeRam = machine.Memory.FreeRamPages;
        machine.Memory.FaultInjection.FailNext(FaultPoint.PageAllocation, skip: 1);
        Action mmap = () => machine.Device.MmapDeviceFile(machine.Mm, 3);
        mmap.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        machine.Mm.VmaCount.Should().Be(0);
        machine.Memory.FreeRamPages.Should().Be(freeRam, "the page inserted before the failure went with the area");
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task TwoMirrorsOfOneProcessOnOneDeviceBothDropTheirEntriesWhenAPageMoves()
    {
        var machine = new DmirrorMachine();
        using Hmm.Drivers.Dmirror second = machine.Device.Open(machine.Mm);
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        var read = new DmirrorCommand { Address = address, Pages = Pages };
        second.Read(ref read, new byte[Pages * PageSize.Bytes]).Should().Be(Errno.None);
        second.AddressSpace.MappedPages.Should().Be(Pages);

        // The first mirror's migration skips both mirrors' invalidation callbacks (same device): the driver
        // drops the second mirror's entries of the old RAM pages itself.
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);
        second.AddressSpace.MappedPages.Should().Be(0);

        var again = new DmirrorCommand { Address = address, Pages = Pages };
        var buffer = new byte[Pages * PageSize.Bytes];
        second.Read(ref again, buffer).Should().Be(Errno.None);
        again.Faults.Should().Be(1);
        buffer.Should().Equal(data);

        machine.CpuRead(address, 1);
        second.AddressSpace.TryLookup(address, out _).Should().BeFalse("the CPU fault's migration dropped every mirror's entry of the page");
        machine.Mirror.AddressSpace.TryLookup(address, out _).Should().BeFalse();
        second.Dispose();
        await machine.TeardownAsync();
    }
}
