using FluentAssertions;
using Hmm.Tests.Migration;
using Xunit;

namespace Hmm.Tests.Diagnostics;

/// <summary>
/// The core's instruments read back through a <see cref="System.Diagnostics.Metrics.MeterListener"/>: values,
/// units and attributes of each event a test drives. The collection runs alone, so the counts are exact.
/// </summary>
[Collection(nameof(MetricsCollection))]
public class HmmMetricsTests
{
    private const ulong Page = PageSize.Bytes;

    [Fact]
    public void CpuFaultsAreCountedByAccessOriginEntryAndResult()
    {
        var mm = new Mm(TestKit.NewMemory());
        ulong a = mm.MapAnonymous(2);
        ulong special = mm.MmapSpecial(0, Page, Protection.ReadWrite, MapFlags.Shared, VmFlags.MixedMap);
        using var metrics = new MetricsRecorder();

        mm.Read(a, new byte[1]);        // an empty entry: the zero page is mapped
        mm.Write(a, [1]);               // the read-only zero page: copied on write
        mm.Write(a + Page, [1]);        // an empty entry, written
        Action hole = () => mm.Read(special, new byte[1]);
        hole.Should().Throw<SegmentationFaultException>();

        metrics.UnitOf("hmm.mm.faults").Should().Be("{fault}");
        metrics.Of("hmm.mm.faults").Should().HaveCount(4).And.OnlyContain(m => m.Value == 1 && Equals(m.Tags["hmm.fault.origin"], "cpu"));
        metrics.Sum("hmm.mm.faults", ("hmm.fault.access", "read"), ("hmm.fault.entry", "none"), ("hmm.fault.result", "ok")).Should().Be(1);
        metrics.Sum("hmm.mm.faults", ("hmm.fault.access", "write"), ("hmm.fault.entry", "present"), ("hmm.fault.result", "ok")).Should().Be(1);
        metrics.Sum("hmm.mm.faults", ("hmm.fault.access", "write"), ("hmm.fault.entry", "none"), ("hmm.fault.result", "ok")).Should().Be(1);
        metrics.Sum("hmm.mm.faults", ("hmm.fault.access", "read"), ("hmm.fault.entry", "none"), ("hmm.fault.result", "sigbus")).Should().Be(1);
        mm.Exit();
    }

    [Fact]
    public void MigrationsToTheDeviceAndBackAreCountedByDirectionAndReason()
    {
        PhysicalMemory memory = MigrationTestKit.NewMemory();
        var driver = new MigrationTestDriver(memory);
        var mm = new Mm(memory);
        ulong a = mm.MapAnonymous(4);
        TestKit.Fill(mm, a, 4, seed: 90);
        using var metrics = new MetricsRecorder();

        driver.MigrateToDevice(mm, a, a + (4 * Page)).Should().Be(4);
        driver.MigrateToSystem(mm, a, a + Page).Should().Be(1);
        TestKit.ReadBytes(mm, a + Page, 1);                             // a CPU fault on a device page: migrate_to_ram
        driver.EvictAll().Should().Be(2);                               // the two pages still on the device, by PFN

        metrics.UnitOf("hmm.migration.pages").Should().Be("{page}");
        metrics.UnitOf("hmm.migration.io").Should().Be("By");
        metrics.Sum("hmm.migration.pages").Should().Be(8);
        metrics.Sum("hmm.migration.pages", ("hmm.migration.direction", "to_device"), ("hmm.migration.reason", "explicit")).Should().Be(4);
        metrics.Sum("hmm.migration.pages", ("hmm.migration.direction", "to_system"), ("hmm.migration.reason", "explicit")).Should().Be(1);
        metrics.Sum("hmm.migration.pages", ("hmm.migration.direction", "to_system"), ("hmm.migration.reason", "cpu_fault")).Should().Be(1);
        metrics.Sum("hmm.migration.pages", ("hmm.migration.direction", "to_system"), ("hmm.migration.reason", "eviction")).Should().Be(2);
        metrics.Sum("hmm.migration.io").Should().Be(8 * (long)Page);
        metrics.Sum("hmm.migration.io", ("hmm.migration.direction", "to_device")).Should().Be(4 * (long)Page);
        metrics.Sum("hmm.mm.faults", ("hmm.fault.entry", "device_private"), ("hmm.fault.access", "read"), ("hmm.fault.result", "ok")).Should().Be(1);
        metrics.Of("hmm.mm.faults").Should().ContainSingle("only the read of the device page faulted");
        mm.Exit();
    }

    [Fact]
    public void ALongTermPinOfACoherentDevicePageCountsAPinMigrationToSystemRam()
    {
        PhysicalMemory memory = MigrationTestKit.NewMemory();
        var coherent = new MigrationTestDriver(memory, "cxl", MemoryType.DeviceCoherent);
        var mm = new Mm(memory);
        ulong a = mm.MapAnonymous(1);
        TestKit.Fill(mm, a, 1, seed: 92);
        coherent.MigrateToDevice(mm, a, a + Page).Should().Be(1);
        using var metrics = new MetricsRecorder();
        var pinned = new Pfn[1];

        mm.PinUserPages(a, GupFlags.Write | GupFlags.LongTerm, pinned).Should().Be(1);

        memory.Page(pinned[0]).IsZoneDevice.Should().BeFalse("coherent memory is never pinned long-term");
        metrics.Of("hmm.migration.pages").Should().ContainSingle().Which.Tags.Should().Equal(new Dictionary<string, object?>
        {
            ["hmm.migration.direction"] = "to_system",
            ["hmm.migration.reason"] = "pin",
        });
        metrics.Sum("hmm.migration.io", ("hmm.migration.reason", "pin")).Should().Be((long)Page);
        mm.UnpinUserPages(pinned);
        mm.Exit();
    }

    [Fact]
    public void ARangeFaultRetriedAfterAnInvalidationCountsOneEbusyCallAndOneSuccessfulCall()
    {
        var mm = new Mm(TestKit.NewMemory());
        ulong a = mm.MapAnonymous(4);
        TestKit.Fill(mm, a, 4, seed: 91);
        MmuIntervalNotifier notifier = MmuIntervalNotifier.Insert(mm, a, 4 * Page, new SequenceOps());
        using var metrics = new MetricsRecorder();

        ulong stale = notifier.ReadBegin();
        mm.Madvise(a + Page, Page, Advice.DontNeed);                   // invalidates the interval: the sequence moves on
        FaultOnce(notifier, a, stale).Should().Be(Errno.EBUSY);
        notifier.ReadRetry(stale).Should().BeTrue();
        ulong fresh = notifier.ReadBegin();
        FaultOnce(notifier, a, fresh).Should().Be(Errno.None);
        notifier.ReadRetry(fresh).Should().BeFalse();

        metrics.UnitOf("hmm.range_fault.calls").Should().Be("{call}");
        metrics.Sum("hmm.range_fault.calls").Should().Be(2);
        metrics.Sum("hmm.range_fault.calls", ("hmm.range_fault.result", "ebusy")).Should().Be(1, "the retry");
        metrics.Sum("hmm.range_fault.calls", ("hmm.range_fault.result", "ok")).Should().Be(1);
        metrics.UnitOf("hmm.notifier.read_retries").Should().Be("{retry}");
        metrics.Sum("hmm.notifier.read_retries").Should().Be(1, "only the stale sequence needed a retry");
        metrics.UnitOf("hmm.notifier.invalidations").Should().Be("{invalidation}");
        metrics.Of("hmm.notifier.invalidations").Should().ContainSingle()
            .Which.Tags.Should().Equal(new Dictionary<string, object?> { ["hmm.notifier.event"] = "clear" });
        // As hmm_vma_fault, the successful call faults from the first page that needs it to the end of the walk:
        // the dropped page, then the two present pages after it (no-op faults).
        metrics.Of("hmm.mm.faults").Should().HaveCount(3).And.OnlyContain(m => Equals(m.Tags["hmm.fault.origin"], "remote") && Equals(m.Tags["hmm.fault.access"], "write"));
        metrics.Sum("hmm.mm.faults", ("hmm.fault.entry", "none")).Should().Be(1);
        metrics.Sum("hmm.mm.faults", ("hmm.fault.entry", "present")).Should().Be(2);
        mm.Exit();
    }

    [Fact]
    public void RecordingAllocatesNothingWithOrWithoutAListener()
    {
        static void Record()
        {
            for (int i = 0; i < 100; i++)
            {
                HmmMetrics.RecordFault(FaultFlags.Write | FaultFlags.Remote, PteKind.DevicePrivate, VmFaultResult.None);
                HmmMetrics.RecordInvalidation(MmuNotifierEvent.Migrate);
                HmmMetrics.RecordRangeFault(Errno.EBUSY);
                HmmMetrics.RecordMigration(toDevice: 3, toSystem: 2, MigrationReason.Eviction);
            }
        }

        Record();
        AllocationProbe.FewestBytesAllocated(Record).Should().Be(0, "with no listener each instrument is one enabled check");

        long measured = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == HmmMetrics.MeterName)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) => Interlocked.Add(ref measured, tags.Length == 0 ? 0 : value));
        listener.Start();

        long bytes = AllocationProbe.FewestBytesAllocated(Record);

        bytes.Should().Be(0, "the attribute pairs are cached and passed on the stack: nothing is boxed or copied to the heap");
        Interlocked.Read(ref measured).Should().BeGreaterThan(0, "the listener heard the measurements, with their attributes");
    }

    private static Errno FaultOnce(MmuIntervalNotifier notifier, ulong start, ulong sequence)
    {
        var range = new HmmRange
        {
            Notifier = notifier,
            Start = start,
            End = start + (4 * Page),
            HmmPfns = new ulong[4],
            DefaultFlags = HmmPfn.RequestFault | HmmPfn.RequestWrite,
            NotifierSequence = sequence,
        };
        using MmapLockGuard guard = notifier.Mm.MmapReadLock();
        return range.Fault();
    }

    private sealed class SequenceOps : IMmuIntervalNotifierOps
    {
        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            subscription.SetSequence(currentSequence);
            return true;
        }
    }
}
