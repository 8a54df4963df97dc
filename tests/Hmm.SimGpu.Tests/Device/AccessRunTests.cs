using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

/// <summary>
/// <see cref="SimAccessRun"/>, the kernel executor's way to make the accesses between two services: the same
/// effects as one <see cref="SimulatedGpu.Access"/> each, with the space and the fault buffer held for the run.
/// </summary>
public sealed class AccessRunTests
{
    // Pages 0 and 1: device pages, read-write; page 2: a RAM page, read-only; page 3: unmapped.
    private static readonly (ulong Offset, ulong Length, DeviceAccessKind Kind, int Engine)[] s_accesses =
    [
        (0, 512, DeviceAccessKind.Write, 0),
        (Page + 8, 100, DeviceAccessKind.Read, 1),
        (2 * Page, 64, DeviceAccessKind.Write, 2),          // read-only: faults
        (2 * Page, 64, DeviceAccessKind.Read, 2),           // a remote (RAM) read
        (3 * Page, 8, DeviceAccessKind.Read, 3),            // unmapped: faults
        (0, 8, DeviceAccessKind.Atomic, 0),                 // no atomic permission: faults
        (Page, Page, DeviceAccessKind.Write, 1),
        (3 * Page, 8, DeviceAccessKind.Read, 4),            // a duplicate fault, merged at fetch
        (0, 2 * Page, DeviceAccessKind.Read, 0),
    ];

    [Fact]
    public void ARunHasTheEffectsOfTheSameAccessesMadeOneByOne()
    {
        Setup one = new();
        Setup run = new();
        var oneResults = new List<DeviceAccessResult>();
        var runResults = new List<DeviceAccessResult>();
        var oneData = new List<byte[]>();
        var runData = new List<byte[]>();

        foreach ((ulong offset, ulong length, DeviceAccessKind kind, int engine) in s_accesses)
        {
            byte[] data = Data(length, kind, oneData.Count);
            oneResults.Add(one.Gpu.Access(one.Space, DeviceVa + offset, length, kind, data, engine, replayable: true));
            oneData.Add(data);
        }

        SimAccessRun accessRun = run.Gpu.CreateAccessRun(run.Space);
        accessRun.Begin();
        foreach ((ulong offset, ulong length, DeviceAccessKind kind, int engine) in s_accesses)
        {
            byte[] data = Data(length, kind, runData.Count);
            runResults.Add(accessRun.Access(DeviceVa + offset, length, kind, data, engine));
            runData.Add(data);
        }

        accessRun.PendingFaults.Should().Be(4);
        long seenInRun = accessRun.Now;
        run.Gpu.Clock.Now.Should().Be(0, "a run charges its time when it ends");
        accessRun.End();

        runResults.Should().Equal(oneResults);
        runResults.Count(r => !r.Completed).Should().Be(4);
        runData.Should().BeEquivalentTo(oneData, o => o.WithStrictOrdering());
        Bytes(run.Machine, run.DevicePages).Should().Equal(Bytes(one.Machine, one.DevicePages));
        run.Gpu.Clock.Now.Should().Be(one.Gpu.Clock.Now).And.Be(seenInRun).And.BePositive();
        run.Gpu.Statistics.Should().Be(one.Gpu.Statistics);
        Faults(run).Should().Equal(Faults(one), "the same faults, engines and timestamps, merged alike");
    }

    [Fact]
    public async Task ARunHoldsItsAddressSpaceAndTheFaultBufferUntilItEnds()
    {
        Setup setup = new();
        SimAccessRun run = setup.Gpu.CreateAccessRun(setup.Space);
        run.Begin();
        run.Access(DeviceVa + (3 * Page), 8, DeviceAccessKind.Read, default, engine: 0).Completed.Should().BeFalse();

        Task unmap = Task.Run(() => setup.Space.Unmap(DeviceVa, Page));
        Task<FaultBatchInfo> fetch = Task.Run(() => setup.Gpu.Faults.FetchBatch(new DeviceFault[4]));
        Task both = Task.WhenAll(unmap, fetch);
        (await Task.WhenAny(both, Task.Delay(200))).Should().NotBeSameAs(both, "the run holds the space's gate and the buffer's lock");

        run.End();

        await both.WaitAsync(TimeSpan.FromSeconds(10));
        (await fetch).Count.Should().Be(1);
        setup.Space.TryLookup(DeviceVa, out _).Should().BeFalse();
        run.IsOpen.Should().BeFalse();
    }

    [Fact]
    public void EndingARunTwiceOrWithoutAccessesChangesNothing()
    {
        Setup setup = new();
        SimAccessRun run = setup.Gpu.CreateAccessRun(setup.Space);
        run.End();
        run.Begin();
        run.End();
        run.End();

        setup.Gpu.Clock.Now.Should().Be(0);
        setup.Gpu.Statistics.Accesses.Should().Be(0);
        setup.Gpu.Access(setup.Space, DeviceVa, 8, DeviceAccessKind.Read, default, engine: 0, replayable: true).Completed.Should().BeTrue("the locks were left");
    }

    private static byte[] Data(ulong length, DeviceAccessKind kind, int seed) =>
        kind == DeviceAccessKind.Write ? Pattern((int)length, seed) : new byte[length];

    private static List<(ulong Address, DeviceAccessKind Access, int Engine, long Timestamp)> Faults(Setup setup)
    {
        var faults = new DeviceFault[16];
        FaultBatchInfo batch = setup.Gpu.Faults.FetchBatch(faults);
        batch.DuplicatesMerged.Should().Be(1);
        return faults.Take(batch.Count).Select(f => (f.Address, f.Access, f.Engine, f.Timestamp)).ToList();
    }

    private sealed class Setup
    {
        public Setup()
        {
            Machine = NewMachine();
            (Gpu, _) = NewGpu(Machine);
            DevicePages = AllocateUnlocked(Gpu, 2);
            Pfn[] ram = RamPages(Machine, 1, seed: 7);
            Space = (SimAddressSpace)Gpu.CreateAddressSpace("vm");
            Space.Map(DeviceVa, DevicePages, DevicePteFlags.Read | DevicePteFlags.Write);
            Space.Map(DeviceVa + (2 * Page), ram, DevicePteFlags.Read);
        }

        public PhysicalMemory Machine { get; }

        public SimulatedGpu Gpu { get; }

        public Pfn[] DevicePages { get; }

        public SimAddressSpace Space { get; }
    }
}
