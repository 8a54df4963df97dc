using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class MetadataOnlyTests
{
    [Fact]
    public void CopiesAndAccessesMoveNoBytesButAreCharged()
    {
        PhysicalMemory machine = NewMachine(storePageData: false);
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] ram = RamPages(machine, 2, seed: 0);
        Pfn[] device = AllocateUnlocked(gpu, 2);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        space.Map(DeviceVa, device, DevicePteFlags.Read | DevicePteFlags.Write);

        gpu.CopyEngine.Copy(ram, device, out CopyCompletion completion).Should().Be(Errno.None);
        DeviceAccessResult access = gpu.Access(space, DeviceVa, 2 * Page, DeviceAccessKind.Write, default, 0, replayable: true);

        completion.Bytes.Should().Be(2 * PageSize.Bytes);
        (completion.End - completion.Start).Should().Be(gpu.Options.Costs.CopyTime(2 * PageSize.Bytes));
        access.Completed.Should().BeTrue();
        gpu.Clock.Now.Should().BeGreaterThan(0);
        gpu.Statistics.BytesAccessed.Should().Be(2 * PageSize.Bytes);
    }

    [Fact]
    public void AnAccessWithABufferIsRefused()
    {
        PhysicalMemory machine = NewMachine(storePageData: false);
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 1);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        space.Map(DeviceVa, device, DevicePteFlags.Read);

        Action access = () => gpu.Access(space, DeviceVa, 4, DeviceAccessKind.Read, new byte[4], 0, replayable: true);

        access.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        gpu.Clock.Now.Should().Be(0);
        gpu.Statistics.Accesses.Should().Be(0);
    }
}
