using FluentAssertions;
using Hmm.SimGpu;
using Xunit;

namespace Hmm.SimGpu.Tests.Workloads;

public sealed class SimulationTests
{
    private const ulong MiB = 1UL << 20;

    /// <summary>24 MiB over 16 MiB of device memory: 150% oversubscription, small enough for a unit test.</summary>
    private static SimulationOptions Oversubscribed(WorkloadKind kind, ulong seed = 42, bool metadataOnly = false, int devices = 1) => new()
    {
        Workload = kind,
        WorkingSetBytes = 24 * MiB * (ulong)devices,
        DeviceMemoryBytes = 16 * MiB,
        Devices = devices,
        Seed = seed,
        MetadataOnly = metadataOnly,
        Engines = 4,
        WarpsPerEngine = 32,
    };

    private static SimulationOptions Fitting(WorkloadKind kind, int bytesPerItem = 512) => new()
    {
        Workload = kind,
        BytesPerItem = bytesPerItem,
        WorkingSetBytes = 8 * MiB,
        DeviceMemoryBytes = 16 * MiB,
        Engines = 4,
        WarpsPerEngine = 32,
    };

    [Theory]
    [InlineData(WorkloadKind.Stream)]
    [InlineData(WorkloadKind.Random)]
    [InlineData(WorkloadKind.Stencil)]
    public void EachWorkloadRunsEveryPhaseUnderOversubscriptionAndItsDataChecks(WorkloadKind kind)
    {
        SimulationReport report = Simulation.Run(Oversubscribed(kind));

        report.Phases.Select(phase => phase.Name).Should().Equal("cpu-init", "gpu-fit", "cpu-readback-fit", "gpu-oversubscribed", "cpu-readback");
        report.DataCheck.Should().Be(DataCheckResult.Passed);
        report.DataErrors.Should().Be(0);
        report.PagesChecked.Should().BeGreaterThan(0);
        report.EvictedPages.Should().BeGreaterThan(0, "the working set is 150% of device memory");
        report.EvictedBlocks.Should().BeGreaterThan(0);
        report.Phases[1].EvictedPages.Should().Be(0, "the fit phase runs over what fits in device memory");
        report.CpuFaults.Should().BeGreaterThan(0, "the CPU reads results that are on the device");
        report.FaultBatches.Should().BeGreaterThan(0);
    }

    [Theory]
    [InlineData(WorkloadKind.Stream)]
    [InlineData(WorkloadKind.Random)]
    [InlineData(WorkloadKind.Stencil)]
    public void WhenDeviceMemorySufficesEveryTouchedPageMigratesAndNothingIsEvicted(WorkloadKind kind)
    {
        SimulationReport report = Simulation.Run(Fitting(kind));

        report.Phases.Select(phase => phase.Name).Should().Equal("cpu-init", "gpu", "cpu-readback");
        report.PagesTouched.Should().BeGreaterThan(0);
        report.PagesToDevice.Should().BeGreaterThanOrEqualTo(report.PagesTouched);
        report.EvictedPages.Should().Be(0);
        report.EvictedBlocks.Should().Be(0);
        report.CpuFaults.Should().BeGreaterThan(0);
        report.DataCheck.Should().Be(DataCheckResult.Passed);
    }

    [Fact]
    public void TheCountersAddUp()
    {
        SimulationReport report = Simulation.Run(Oversubscribed(WorkloadKind.Stencil));

        report.BytesToDevice.Should().Be(report.PagesToDevice * 4096);
        report.BytesToRam.Should().Be(report.PagesToRam * 4096);
        report.PagesToRam.Should().BeGreaterThanOrEqualTo(report.EvictedPages);
        report.DeviceFaults.Should().BeGreaterThanOrEqualTo(report.FaultBatches);
        report.DuplicatesMerged.Should().BeGreaterThan(0).And.BeLessThan(report.DeviceFaults);
        report.Phases.Sum(phase => phase.SimulatedNanoseconds).Should().Be(report.SimulatedNanoseconds);
        report.Phases.Sum(phase => phase.DeviceFaults).Should().Be(report.DeviceFaults);
        report.Phases.Sum(phase => phase.CpuFaults).Should().Be(report.CpuFaults);
        report.Phases.Sum(phase => phase.PagesToDevice).Should().Be(report.PagesToDevice);
        report.Phases.Sum(phase => phase.PagesToRam).Should().Be(report.PagesToRam);
        report.Phases.Sum(phase => phase.EvictedPages).Should().Be(report.EvictedPages);
        report.Phases[0].DeviceFaults.Should().Be(0, "the CPU initialises the buffer before any kernel runs");
        report.EffectiveBandwidth.Should().BeApproximately((report.BytesToDevice + report.BytesToRam) * 1e9 / report.SimulatedNanoseconds, 1e-3);
        report.PagesChecked.Should().Be(report.Phases[2].WorkUnits + report.Phases[4].WorkUnits);
    }

    [Fact]
    public void TheDefaultStreamRunMergesTheDuplicateFaultsOfWarpsSharingAPage()
    {
        SimulationReport report = Simulation.Run(new SimulationOptions());

        report.DataCheck.Should().Be(DataCheckResult.Passed);
        report.DuplicatesMerged.Should().BeGreaterThan(report.DeviceFaults / 2, "eight work items on neighbouring warps fault on each page before a batch is serviced");
        report.DeviceFaults.Should().Be(report.PagesToDevice + report.DuplicatesMerged, "every fault the driver services migrates its page; the rest were merged");
        SimulationPhaseReport firstKernels = report.Phases[1];
        firstKernels.Name.Should().Be("gpu-fit");
        firstKernels.DeviceFaults.Should().Be(firstKernels.WorkUnits * 3 * 8, "nothing is resident yet: each of a row's 8 items faults once on each of its 3 pages");
        firstKernels.PagesToDevice.Should().Be(firstKernels.WorkUnits * 3);
    }

    [Theory]
    [InlineData(WorkloadKind.Stream)]
    [InlineData(WorkloadKind.Random)]
    [InlineData(WorkloadKind.Stencil)]
    public void TheSliceSizeChangesTheDuplicatesButNotTheResultsOrThePagesMigrated(WorkloadKind kind)
    {
        SimulationReport wholePages = Simulation.Run(Fitting(kind, bytesPerItem: 4096));
        SimulationReport slices = Simulation.Run(Fitting(kind, bytesPerItem: 64));

        wholePages.DataCheck.Should().Be(DataCheckResult.Passed);
        slices.DataCheck.Should().Be(DataCheckResult.Passed);
        slices.PagesTouched.Should().Be(wholePages.PagesTouched);
        slices.PagesToDevice.Should().Be(wholePages.PagesToDevice);
        slices.DuplicatesMerged.Should().BeGreaterThan(wholePages.DuplicatesMerged);
    }

    [Theory]
    [InlineData(WorkloadKind.Stream)]
    [InlineData(WorkloadKind.Random)]
    [InlineData(WorkloadKind.Stencil)]
    public void TheSameOptionsGiveTheSameReport(WorkloadKind kind)
    {
        SimulationReport first = Simulation.Run(Oversubscribed(kind, seed: 7));
        SimulationReport second = Simulation.Run(Oversubscribed(kind, seed: 7));

        Fingerprint(second).Should().Be(Fingerprint(first));
    }

    [Fact]
    public void ADifferentSeedGivesADifferentRandomWorkload()
    {
        SimulationReport first = Simulation.Run(Oversubscribed(WorkloadKind.Random, seed: 1));
        SimulationReport second = Simulation.Run(Oversubscribed(WorkloadKind.Random, seed: 2));

        Fingerprint(second).Should().NotBe(Fingerprint(first));
        second.DataCheck.Should().Be(DataCheckResult.Passed);
    }

    [Theory]
    [InlineData(WorkloadKind.Stream)]
    [InlineData(WorkloadKind.Random)]
    public void AMetadataOnlyRunCostsTheSameAsARunWithData(WorkloadKind kind)
    {
        SimulationReport withData = Simulation.Run(Oversubscribed(kind));
        SimulationReport metadataOnly = Simulation.Run(Oversubscribed(kind, metadataOnly: true));

        metadataOnly.DataCheck.Should().Be(DataCheckResult.Skipped);
        metadataOnly.PagesChecked.Should().Be(0);
        metadataOnly.PagesToDevice.Should().Be(withData.PagesToDevice);
        metadataOnly.PagesToRam.Should().Be(withData.PagesToRam);
        metadataOnly.CpuFaults.Should().Be(withData.CpuFaults);
        metadataOnly.DeviceFaults.Should().Be(withData.DeviceFaults);
        metadataOnly.SimulatedNanoseconds.Should().Be(withData.SimulatedNanoseconds);
    }

    [Theory]
    [InlineData(WorkloadKind.Stream)]
    [InlineData(WorkloadKind.Stencil)]
    public void TwoDevicesShareTheBufferAndTheDataChecks(WorkloadKind kind)
    {
        SimulationReport report = Simulation.Run(Oversubscribed(kind, devices: 2));

        report.Options.Devices.Should().Be(2);
        report.DataCheck.Should().Be(DataCheckResult.Passed);
        report.EvictedPages.Should().BeGreaterThan(0);
        report.PagesToDevice.Should().BeGreaterThanOrEqualTo(report.PagesTouched);
    }

    [Fact]
    public void MoreIterationsFindPagesResidentWhenTheyFit()
    {
        SimulationOptions once = Fitting(WorkloadKind.Stream);
        SimulationReport one = Simulation.Run(once);
        SimulationReport three = Simulation.Run(new SimulationOptions
        {
            Workload = once.Workload,
            WorkingSetBytes = once.WorkingSetBytes,
            DeviceMemoryBytes = once.DeviceMemoryBytes,
            Engines = once.Engines,
            WarpsPerEngine = once.WarpsPerEngine,
            Iterations = 3,
        });

        three.PagesToDevice.Should().Be(one.PagesToDevice, "later launches find every page resident");
        three.DeviceFaults.Should().Be(one.DeviceFaults);
        three.Phases[1].WorkUnits.Should().Be(3 * one.Phases[1].WorkUnits);
    }

    [Fact]
    public void ProgressRisesToTheTotalThroughEveryPhase()
    {
        var reports = new List<SimulationProgress>();
        SimulationReport report = Simulation.Run(Oversubscribed(WorkloadKind.Stream), new SynchronousProgress(reports.Add));

        reports.Should().NotBeEmpty();
        reports.Select(p => p.Completed).Should().BeInAscendingOrder();
        reports.Select(p => p.Total).Distinct().Should().ContainSingle();
        reports[^1].Completed.Should().Be(reports[^1].Total);
        reports.Select(p => p.Phase).Distinct().Should().Equal(report.Phases.Select(phase => phase.Name));
    }

    [Theory]
    [InlineData("cpu-init")]
    [InlineData("gpu-fit")]
    [InlineData("cpu-readback")]
    public void ACancelledRunStopsWithOperationCanceledInAnyPhase(string phase)
    {
        using var cancellation = new CancellationTokenSource();
        string? lastPhase = null;
        var progress = new SynchronousProgress(p =>
        {
            lastPhase = p.Phase;
            if (p.Phase == phase)
            {
                cancellation.Cancel();
            }
        });

        Action run = () => Simulation.Run(Oversubscribed(WorkloadKind.Stream), progress, cancellationToken: cancellation.Token);

        run.Should().Throw<OperationCanceledException>();
        lastPhase.Should().Be(phase, "the run stops in the phase it was cancelled in");
    }

    [Fact]
    public void NullOptionsAreRejected()
    {
        Action run = () => Simulation.Run(null!);

        run.Should().Throw<ArgumentNullException>();
    }

    /// <summary>Every value of the report that must not depend on wall time.</summary>
    private static string Fingerprint(SimulationReport report) => string.Join(
        ',',
        report.PagesTouched, report.DeviceFaults, report.FaultBatches, report.DuplicatesMerged, report.CpuFaults, report.PagesToDevice,
        report.BytesToDevice, report.PagesToRam, report.BytesToRam, report.EvictedBlocks, report.EvictedPages, report.SimulatedNanoseconds,
        report.DataCheck, report.PagesChecked, report.DataErrors,
        string.Join(';', report.Phases.Select(p => $"{p.Name}:{p.WorkUnits}:{p.SimulatedNanoseconds}:{p.DeviceFaults}:{p.CpuFaults}:{p.PagesToDevice}:{p.PagesToRam}:{p.EvictedPages}")));

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class SynchronousProgress(Action<SimulationProgress> report) : IProgress<SimulationProgress>
    {
        public void Report(SimulationProgress value) => report(value);
    }
}
