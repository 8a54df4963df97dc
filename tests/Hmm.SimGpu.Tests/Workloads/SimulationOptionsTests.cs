using FluentAssertions;
using Hmm.SimGpu;
using Xunit;

namespace Hmm.SimGpu.Tests.Workloads;

public sealed class SimulationOptionsTests
{
    private const ulong MiB = 1UL << 20;

    public static TheoryData<string, SimulationOptions> InvalidOptions() => new()
    {
        { "workload", new SimulationOptions { Workload = (WorkloadKind)7 } },
        { "working set", new SimulationOptions { WorkingSetBytes = (8 * MiB) + 1 } },
        { "working set", new SimulationOptions { WorkingSetBytes = 4096 } },
        { "working set", new SimulationOptions { WorkingSetBytes = SimulationOptions.MaximumWorkingSetBytes + 4096 } },
        { "device memory", new SimulationOptions { DeviceMemoryBytes = (16 * MiB) + 4096 } },
        { "device memory", new SimulationOptions { DeviceMemoryBytes = 2 * MiB } },
        { "batch size", new SimulationOptions { BatchSize = 0 } },
        { "batch size", new SimulationOptions { BatchSize = 8193 } },
        { "devices", new SimulationOptions { Devices = 0 } },
        { "devices", new SimulationOptions { Devices = 17 } },
        { "engines", new SimulationOptions { Engines = 0 } },
        { "warps per engine", new SimulationOptions { WarpsPerEngine = -1 } },
        { "iterations", new SimulationOptions { Iterations = 101 } },
        { "bytes per item 32 must be a power of two from 64 to 4096", new SimulationOptions { BytesPerItem = 32 } },
        { "bytes per item 768 must be a power of two from 64 to 4096", new SimulationOptions { BytesPerItem = 768 } },
        { "bytes per item 8192 must be a power of two from 64 to 4096", new SimulationOptions { BytesPerItem = 8192 } },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void AnOptionOutOfRangeIsEinvalNamingIt(string name, SimulationOptions options)
    {
        Action validate = options.Validate;
        Action run = () => Simulation.Run(options);

        validate.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL && e.Message.Contains(name, StringComparison.Ordinal));
        run.Should().Throw<HmmException>().Where(e => e.Error == Errno.EINVAL);
    }

    [Fact]
    public void TheDefaultsAreTheBuiltInRunAtOneHundredFiftyPercent()
    {
        var options = new SimulationOptions();

        options.Validate();
        options.Workload.Should().Be(WorkloadKind.Stream);
        options.WorkingSetBytes.Should().Be(96 * MiB);
        options.ResolveDeviceMemoryBytes().Should().Be(64 * MiB);
        options.BatchSize.Should().Be(256);
        options.Devices.Should().Be(1);
        options.BytesPerItem.Should().Be(512, "eight work items, on eight neighbouring warps, share each page");
    }

    [Theory]
    [InlineData(16UL << 30, 1, 10922UL)]
    [InlineData(96UL << 20, 2, 32UL)]
    [InlineData(1UL << 20, 1, 16UL)]
    public void DerivedDeviceMemoryIsTwoThirdsOfTheWorkingSetOverAllDevicesInWholeChunks(ulong workingSet, int devices, ulong expectedMiB)
    {
        var options = new SimulationOptions { WorkingSetBytes = workingSet, Devices = devices };

        options.ResolveDeviceMemoryBytes().Should().Be(expectedMiB * MiB);
    }

    [Fact]
    public void AnExplicitDeviceMemoryIsKept()
    {
        new SimulationOptions { DeviceMemoryBytes = 32 * MiB }.ResolveDeviceMemoryBytes().Should().Be(32 * MiB);
    }
}
