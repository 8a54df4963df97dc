using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class AddressSpaceTests
{
    [Fact]
    public void MapUnmapProtectAndLookupKeepTheirCounts()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 4);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");

        space.Map(DeviceVa, device, DevicePteFlags.Read);
        space.Map(DeviceVa + Page, [device[3]], DevicePteFlags.Read | DevicePteFlags.Write);

        space.MappedPages.Should().Be(4, "a replaced entry is still one entry");
        space.TryLookup(DeviceVa + Page + 17, out DevicePte replaced).Should().BeTrue();
        replaced.Should().Be(new DevicePte(device[3], DevicePteFlags.Read | DevicePteFlags.Write));
        space.Protect(DeviceVa, 8 * Page, DevicePteFlags.Read).Should().Be(1, "only the one writable entry changes");
        space.Unmap(DeviceVa + (2 * Page), 100 * Page).Should().Be(2);
        space.MappedPages.Should().Be(2);
        space.TryLookup(DeviceVa + (2 * Page), out _).Should().BeFalse();
        space.Unmap(DeviceVa, 2 * Page).Should().Be(2);
        space.MappedPages.Should().Be(0);
        space.Device.Should().BeSameAs(gpu);
        space.Name.Should().Be("vm");
    }

    [Fact]
    public void ASparseSixteenGigabyteRangeIsCheapToMapAndClear()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 1);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        const ulong sixteenGiB = 16UL << 30;
        const int stride = 4099;

        for (ulong page = 0; page < sixteenGiB / Page; page += stride)
        {
            space.Map(DeviceVa + (page * Page), device, DevicePteFlags.Read);
        }

        long mapped = space.MappedPages;
        mapped.Should().Be((long)(((sixteenGiB / Page) + stride - 1) / stride));
        space.Unmap(DeviceVa, sixteenGiB).Should().Be(mapped);
        space.Protect(DeviceVa, sixteenGiB, DevicePteFlags.Read).Should().Be(0);
        space.MappedPages.Should().Be(0);
    }

    [Fact]
    public void EntriesAroundLeafAndRegionBoundariesAreKeptApart()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 4);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        ulong regionEnd = (1UL << 30) - Page;

        space.Map(regionEnd - Page, device, DevicePteFlags.Read);

        for (int i = 0; i < 4; i++)
        {
            space.TryLookup(regionEnd - Page + ((ulong)i * Page), out DevicePte entry).Should().BeTrue();
            entry.Page.Should().Be(device[i]);
        }

        space.Unmap(regionEnd, Page).Should().Be(1);
        space.TryLookup(regionEnd - Page, out _).Should().BeTrue();
        space.TryLookup(regionEnd + Page, out _).Should().BeTrue();
        space.MappedPages.Should().Be(3);
    }
}
