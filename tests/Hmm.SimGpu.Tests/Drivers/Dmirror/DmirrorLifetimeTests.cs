using FluentAssertions;
using Hmm.Drivers;
using Xunit;

namespace Hmm.SimGpu.Tests.Drivers.Dmirror;

/// <summary>Closing a mirror, unbinding the device and the whole machine's teardown: data intact, nothing leaked.</summary>
public sealed class DmirrorLifetimeTests
{
    private const int Pages = 64;

    [Fact]
    public async Task DisposeEvictsTheWholeDeviceIncludingOtherMirrorsPages()
    {
        var machine = new DmirrorMachine();
        var second = new Mm(machine.Memory, "second");
        Hmm.Drivers.Dmirror secondMirror = machine.Device.Open(second);
        ulong a = machine.Map(Pages);
        byte[] dataA = machine.Fill(a, Pages, 1);
        ulong b = second.Mmap(0, Pages * (ulong)PageSize.Bytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        byte[] dataB = DmirrorMachine.Pattern(Pages, 2);
        second.Write(b, dataB);
        machine.MigrateToDevice(a, Pages).Result.Should().Be(Errno.None);
        machine.MigrateToDevice(b, Pages, secondMirror).Result.Should().Be(Errno.None);
        machine.Device.OwnerOf(second.ReadPte(b).Pfn).Should().BeSameAs(secondMirror);

        secondMirror.Dispose();
        machine.Device.PagesFreed.Should().Be(2 * Pages, "closing a file evicts every page of the device, as the kernel does");
        machine.Snapshot(a, Pages).Should().OnlyContain(s => s == DmirrorSnapshot.Write);
        machine.CpuRead(a, Pages).Should().Equal(dataA);
        var readB = new byte[Pages * PageSize.Bytes];
        second.Read(b, readB);
        readB.Should().Equal(dataB);
        machine.Mirror.AddressSpace.MappedPages.Should().Be(0, "the eviction's invalidation dropped the other mirror's entries");
        secondMirror.AddressSpace.MappedPages.Should().Be(0);
        second.Exit();
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task UnbindingTheDeviceEvictsEverythingAndLeaksNoPage()
    {
        var machine = new DmirrorMachine(devices: 2);
        ulong freeRamAtStart = machine.Memory.FreeRamPages;
        using Hmm.Drivers.Dmirror other = machine.Devices[1].Open(machine.Mm);
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages / 2).Result.Should().Be(Errno.None);
        machine.MigrateToDevice(address + (Pages / 2 * (ulong)PageSize.Bytes), Pages / 2, other).Result.Should().Be(Errno.None);

        // The mirrors stay open: the devm action of each driver evicts before the pagemaps go.
        await machine.Gpus[0].Device.UnbindAsync();
        await machine.Gpus[1].Device.UnbindAsync();
        machine.Snapshot(address, Pages).Should().OnlyContain(s => s == DmirrorSnapshot.Write);
        machine.CpuRead(address, Pages).Should().Equal(data);
        foreach (DmirrorDevice device in machine.Devices)
        {
            device.PagesAllocated.Should().Be(Pages / 2);
            device.PagesFreed.Should().Be(Pages / 2);
        }

        other.Dispose();
        machine.Mirror.Dispose();
        machine.Mm.Exit();
        machine.Memory.FreeRamPages.Should().Be(freeRamAtStart, "every RAM page of the process came back");
    }

    [Fact]
    public async Task AForkedChildKeepsItsDataWhenTheParentsMirrorReleasesTheDevice()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        byte[] data = machine.Fill(address, Pages);
        machine.MigrateToDevice(address, Pages).Result.Should().Be(Errno.None);
        Mm child = machine.Mm.Fork();

        var release = new DmirrorCommand { Address = address, Pages = 1 };
        machine.Mirror.Release(ref release).Should().Be(Errno.None);
        var fromChild = new byte[Pages * PageSize.Bytes];
        child.Read(address, fromChild);
        fromChild.Should().Equal(data);
        machine.CpuRead(address, Pages).Should().Equal(data);
        child.Exit();
        await machine.TeardownAsync();
    }
}
