using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class TwoDeviceTests
{
    [Fact]
    public void TwoGpusOnOneMachineHaveDisjointMemoryAndOwners()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu a, _) = NewGpu(machine, "gpu0");
        (SimulatedGpu b, _) = NewGpu(machine, "gpu1", clock: a.VirtualClock);
        Pfn[] pagesA = AllocateUnlocked(a, 4);
        Pfn[] pagesB = AllocateUnlocked(b, 4);

        a.LocalMemory.Owner.Should().NotBeSameAs(b.LocalMemory.Owner);
        pagesA.Should().OnlyContain(p => a.LocalMemory.Contains(p) && !b.LocalMemory.Contains(p));
        pagesB.Should().OnlyContain(p => b.LocalMemory.Contains(p) && !a.LocalMemory.Contains(p));
        Action foreign = () => a.LocalMemory.ChunkOf(pagesB[0]);
        foreign.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        b.Clock.Should().BeSameAs(a.Clock);
    }

    [Fact]
    public void DeviceToDeviceCopiesMoveRealDataAndAreCountedAsPeerTraffic()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu a, _) = NewGpu(machine, "gpu0");
        (SimulatedGpu b, _) = NewGpu(machine, "gpu1", clock: a.VirtualClock);
        Pfn[] ram = RamPages(machine, 3, seed: 31);
        Pfn[] pagesA = AllocateUnlocked(a, 3);
        Pfn[] pagesB = AllocateUnlocked(b, 3);
        a.CopyEngine.Copy(ram, pagesA, out _).Should().Be(Errno.None);

        b.CopyEngine.Copy(pagesA, pagesB, out CopyCompletion peer).Should().Be(Errno.None);

        Bytes(machine, pagesB).Should().Equal(Bytes(machine, ram));
        peer.Transfers.Should().Be(1);
        (peer.End - peer.Start).Should().Be(new SimGpuCostModel().CopyTime(3 * PageSize.Bytes));
        b.Statistics.PagesCopiedDeviceToDevice.Should().Be(3);
        b.Statistics.BytesCopiedDeviceToDevice.Should().Be(3 * PageSize.Bytes);
        a.Statistics.PagesCopiedToDevice.Should().Be(3);
    }

    [Fact]
    public void AnotherGpusPageIsARemoteAccess()
    {
        PhysicalMemory machine = NewMachine();
        var costs = new SimGpuCostModel { LocalMemoryBandwidth = 4096e9, RemoteAccessBandwidth = 4096e6 };
        (SimulatedGpu a, _) = NewGpu(machine, "gpu0", options: new SimGpuOptions { MemoryBytes = 8 * MiB, Costs = costs });
        (SimulatedGpu b, _) = NewGpu(machine, "gpu1", clock: a.VirtualClock);
        Pfn[] pagesB = AllocateUnlocked(b, 1);
        IDeviceAddressSpace space = a.CreateAddressSpace("vm");
        space.Map(DeviceVa, pagesB, DevicePteFlags.Read | DevicePteFlags.Write);
        byte[] data = Pattern(PageSize.Bytes, seed: 8);

        a.Access(space, DeviceVa, Page, DeviceAccessKind.Write, data, 0, replayable: false).Completed.Should().BeTrue();

        machine.ReadPageData(pagesB[0]).ToArray().Should().Equal(data);
        a.Clock.Now.Should().Be(1_000, "4 KiB over the remote path at 4.096 GB/s");
    }

    [Fact]
    public void AnAddressSpaceOfAnotherGpuIsRefused()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu a, _) = NewGpu(machine, "gpu0");
        (SimulatedGpu b, _) = NewGpu(machine, "gpu1");
        IDeviceAddressSpace spaceB = b.CreateAddressSpace("vm");

        Action access = () => a.Access(spaceB, DeviceVa, 1, DeviceAccessKind.Read, default, 0, replayable: true);

        access.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        a.Statistics.Accesses.Should().Be(0);
        b.Faults.Pending.Should().Be(0);
    }
}
