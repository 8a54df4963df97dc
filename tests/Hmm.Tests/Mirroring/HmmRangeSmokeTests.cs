using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Mirroring;

public class HmmRangeSmokeTests
{
    private sealed class AcceptAll : IMmuIntervalNotifierOps
    {
        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            subscription.SetSequence(currentSequence);
            return true;
        }
    }

    [Fact]
    public void FaultWithRequestFaultPopulatesAndSnapshotReportsState()
    {
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });
        var mm = new Mm(memory);
        ulong a = mm.Mmap(0, 4 * 4096, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        MmuIntervalNotifier notifier = MmuIntervalNotifier.Insert(mm, a, 4 * 4096, new AcceptAll());
        var pfns = new ulong[4];

        var snapshot = new HmmRange { Notifier = notifier, Start = a, End = a + 4 * 4096, HmmPfns = pfns };
        snapshot.NotifierSequence = notifier.ReadBegin();
        using (mm.MmapReadLock())
        {
            snapshot.Fault().Should().Be(Errno.None);
        }

        pfns.Should().OnlyContain(p => p == 0);

        var fault = new HmmRange { Notifier = notifier, Start = a, End = a + 4 * 4096, HmmPfns = pfns, DefaultFlags = HmmPfn.RequestFault | HmmPfn.RequestWrite };
        fault.NotifierSequence = notifier.ReadBegin();
        using (mm.MmapReadLock())
        {
            fault.Fault().Should().Be(Errno.None);
        }

        pfns.Should().OnlyContain(p => (p & (HmmPfn.Valid | HmmPfn.Write)) == (HmmPfn.Valid | HmmPfn.Write));
        HmmPfn.ToPfn(pfns[2]).Should().Be(mm.ReadPte(a + 2 * 4096).Pfn);

        ulong seq = notifier.ReadBegin();
        mm.Munmap(a, 4096);
        notifier.ReadRetry(seq).Should().BeTrue();
        fault.NotifierSequence = seq;
        using (mm.MmapReadLock())
        {
            fault.Fault().Should().Be(Errno.EBUSY);
        }

        fault.NotifierSequence = notifier.ReadBegin();
        using (mm.MmapReadLock())
        {
            fault.Fault().Should().Be(Errno.EFAULT);
        }
    }
}
