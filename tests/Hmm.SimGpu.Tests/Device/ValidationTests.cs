using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

/// <summary>Every documented EINVAL of the simulated GPU, each checked to change nothing.</summary>
public sealed class ValidationTests
{
    public static TheoryData<string> BadOptions => new()
    {
        "host memory type", "zero chunk", "unaligned chunk", "huge chunk", "zero memory", "memory not whole chunks",
        "zero buffer", "batch above buffer", "zero batch", "negative latency", "zero bandwidth", "infinite slope",
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void BadOptionsAreRefusedBeforeAnythingIsCreated(string which)
    {
        PhysicalMemory machine = NewMachine();
        SimGpuOptions options = which switch
        {
            "host memory type" => new() { MemoryType = MemoryType.Generic },
            "zero chunk" => new() { ChunkBytes = 0 },
            "unaligned chunk" => new() { ChunkBytes = 3 * MiB, MemoryBytes = 6 * MiB },
            "huge chunk" => new() { ChunkBytes = 2048 * MiB, MemoryBytes = 2048 * MiB },
            "zero memory" => new() { MemoryBytes = 0 },
            "memory not whole chunks" => new() { ChunkBytes = 4 * MiB, MemoryBytes = 6 * MiB },
            "zero buffer" => new() { FaultBufferEntries = 0 },
            "batch above buffer" => new() { FaultBufferEntries = 16, FaultBatchSize = 32 },
            "zero batch" => new() { FaultBatchSize = 0 },
            "negative latency" => new() { Costs = new SimGpuCostModel { ReplayLatency = -1 } },
            "zero bandwidth" => new() { Costs = new SimGpuCostModel { LocalMemoryBandwidth = 0 } },
            _ => new() { Costs = new SimGpuCostModel { PcieCurveSlope = double.PositiveInfinity } },
        };

        Action create = () => _ = new SimulatedGpu(machine, "gpu0", options);

        create.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        machine.Resources().Should().ContainSingle("no device region was claimed");
    }

    [Fact]
    public void NegativeClockAdvancesAndTransferSizesAreRefused()
    {
        var clock = new VirtualClock();
        clock.Advance(5);

        Action advance = () => clock.Advance(-1);
        Action copyTime = () => new SimGpuCostModel().CopyTime(-1);

        advance.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        copyTime.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        clock.Now.Should().Be(5);
        clock.AdvanceTo(3).Should().Be(5, "time never goes backwards");
    }

    public static TheoryData<string> BadMaps => new()
    {
        "misaligned", "empty", "wrap", "no flags", "unknown flag", "absent frame", "writable zero page",
    };

    [Theory]
    [MemberData(nameof(BadMaps))]
    public void BadMapsMapNothing(string which)
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 2);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        var absent = new Pfn(1UL << 40);
        DevicePteFlags rw = DevicePteFlags.Read | DevicePteFlags.Write;

        Action map = which switch
        {
            "misaligned" => () => space.Map(DeviceVa + 8, device, rw),
            "empty" => () => space.Map(DeviceVa, [], rw),
            "wrap" => () => space.Map(ulong.MaxValue - Page + 1, device, rw),
            "no flags" => () => space.Map(DeviceVa, device, DevicePteFlags.None),
            "unknown flag" => () => space.Map(DeviceVa, device, (DevicePteFlags)8),
            "absent frame" => () => space.Map(DeviceVa, [device[0], absent], rw),
            _ => () => space.Map(DeviceVa, [device[0], PhysicalMemory.ZeroPage], rw),
        };

        map.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        space.MappedPages.Should().Be(0);
        space.TryLookup(DeviceVa, out _).Should().BeFalse();
    }

    [Fact]
    public void TheZeroPageMapsReadOnly()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");

        space.Map(DeviceVa, [PhysicalMemory.ZeroPage], DevicePteFlags.Read);

        space.TryLookup(DeviceVa + 5, out DevicePte entry).Should().BeTrue();
        entry.Should().Be(new DevicePte(PhysicalMemory.ZeroPage, DevicePteFlags.Read));
    }

    public static TheoryData<string, string> BadRanges => new()
    {
        { "unmap", "misaligned" }, { "unmap", "zero" }, { "unmap", "unaligned length" }, { "unmap", "wrap" },
        { "protect", "misaligned" }, { "protect", "zero" }, { "protect", "wrap" }, { "protect", "no flags" },
        { "invalidate", "misaligned" }, { "invalidate", "zero" }, { "invalidate", "wrap" },
    };

    [Theory]
    [MemberData(nameof(BadRanges))]
    public void BadRangesChangeNothing(string call, string which)
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 2);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        space.Map(DeviceVa, device, DevicePteFlags.Read | DevicePteFlags.Write);
        (ulong address, ulong length) = which switch
        {
            "misaligned" => (DeviceVa + 1, 2 * Page),
            "zero" => (DeviceVa, 0UL),
            "unaligned length" => (DeviceVa, Page + 1),
            "wrap" => (ulong.MaxValue - Page + 1, 2 * Page),
            _ => (DeviceVa, 2 * Page),
        };
        DevicePteFlags flags = which == "no flags" ? DevicePteFlags.None : DevicePteFlags.Read;

        Action act = call switch
        {
            "unmap" => () => space.Unmap(address, length),
            "protect" => () => space.Protect(address, length, flags),
            _ => () => space.InvalidateTlb(address, length),
        };

        act.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        space.MappedPages.Should().Be(2);
        space.TryLookup(DeviceVa + Page, out DevicePte entry).Should().BeTrue();
        entry.Flags.Should().Be(DevicePteFlags.Read | DevicePteFlags.Write);
        gpu.Clock.Now.Should().Be(0);
        gpu.Statistics.TlbInvalidations.Should().Be(0);
    }

    public static TheoryData<string> BadAccesses => new()
    {
        "zero length", "wrap", "negative engine", "short buffer", "long buffer", "unknown kind",
    };

    [Theory]
    [MemberData(nameof(BadAccesses))]
    public void BadAccessesChangeNothing(string which)
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] device = AllocateUnlocked(gpu, 1);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        space.Map(DeviceVa, device, DevicePteFlags.Read | DevicePteFlags.Write);
        byte[] before = machine.ReadPageData(device[0]).ToArray();

        Action access = which switch
        {
            "zero length" => () => gpu.Access(space, DeviceVa, 0, DeviceAccessKind.Write, default, 0, true),
            "wrap" => () => gpu.Access(space, ulong.MaxValue, 2, DeviceAccessKind.Write, default, 0, true),
            "negative engine" => () => gpu.Access(space, DeviceVa, 4, DeviceAccessKind.Write, new byte[4], -1, true),
            "short buffer" => () => gpu.Access(space, DeviceVa, 4, DeviceAccessKind.Write, new byte[3], 0, true),
            "long buffer" => () => gpu.Access(space, DeviceVa, 4, DeviceAccessKind.Write, new byte[5], 0, true),
            _ => () => gpu.Access(space, DeviceVa, 4, (DeviceAccessKind)7, new byte[4], 0, true),
        };

        access.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        machine.ReadPageData(device[0]).ToArray().Should().Equal(before);
        gpu.Clock.Now.Should().Be(0);
        gpu.Statistics.Accesses.Should().Be(0);
        gpu.Faults.Pending.Should().Be(0);
    }

    [Fact]
    public void NullArgumentsAreRefused()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);

        FluentActions.Invoking(() => new SimulatedGpu(null!, "gpu")).Should().Throw<ArgumentNullException>();
        FluentActions.Invoking(() => new SimulatedGpu(machine, null!)).Should().Throw<ArgumentNullException>();
        FluentActions.Invoking(() => gpu.CreateAddressSpace(null!)).Should().Throw<ArgumentNullException>();
        FluentActions.Invoking(() => gpu.Access(null!, DeviceVa, 1, DeviceAccessKind.Read, default, 0, true)).Should().Throw<ArgumentNullException>();
        FluentActions.Invoking(() => gpu.LocalMemory.Attach(null!)).Should().Throw<ArgumentNullException>();
    }

    public static TheoryData<string> BadCopies => new() { "length mismatch", "absent source", "absent destination", "zero page destination" };

    [Theory]
    [MemberData(nameof(BadCopies))]
    public void BadCopiesCopyNothing(string which)
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] ram = RamPages(machine, 2, seed: 77);
        Pfn[] device = AllocateUnlocked(gpu, 2);
        byte[] before = Bytes(machine, device);
        var absent = new Pfn(1UL << 40);

        Action copy = which switch
        {
            "length mismatch" => () => gpu.CopyEngine.Copy(ram, device.AsSpan(0, 1), out _),
            "absent source" => () => gpu.CopyEngine.Copy([ram[0], absent], device, out _),
            "absent destination" => () => gpu.CopyEngine.Copy(ram, [device[0], absent], out _),
            _ => () => gpu.CopyEngine.Copy(ram, [device[0], PhysicalMemory.ZeroPage], out _),
        };

        copy.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        Bytes(machine, device).Should().Equal(before, "the first, valid pair was not copied either");
        gpu.Statistics.CopyBatches.Should().Be(0);
        gpu.CopyEngine.Copy(ram.AsSpan(0, 1), device.AsSpan(0, 1), out CopyCompletion next).Should().Be(Errno.None);
        next.Start.Should().Be(0, "the refused copy did not occupy the engine");
    }

    [Fact]
    public void AnEmptyFaultBatchDestinationIsRefused()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        IDeviceAddressSpace space = gpu.CreateAddressSpace("vm");
        gpu.Access(space, DeviceVa, 1, DeviceAccessKind.Read, default, 0, true);

        Action fetch = () => gpu.Faults.FetchBatch([]);

        fetch.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        gpu.Faults.Pending.Should().Be(1);
    }
}
