using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Mirroring;

/// <summary>
/// What mirrors see when their process exits (<c>exit_mmap</c>): <c>mmu_notifier_release</c>, then an UNMAP
/// invalidation of the whole space around the zap of every area; classic notifiers hear nothing after their release.
/// </summary>
public class ExitMirroringTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x4000_0000;
    private const int Pages = 8;

    private readonly PhysicalMemory _memory = new(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });
    private readonly Mm _mm;

    public ExitMirroringTests()
    {
        _mm = new Mm(_memory, "exiting");
    }

    [Fact]
    public void AMirrorThatDropsEntriesOnlyOnUnmapEndsWithNoDeviceMappingToAFreedPage()
    {
        ulong a = MapWritten(Pages);
        var mirror = new UnmapOnlyMirror(_mm, 0, ulong.MaxValue & ~(Page - 1));
        mirror.Fault(a, Pages).Should().Be(Errno.None);
        Pfn[] mapped = mirror.MappedFrames();
        mapped.Should().HaveCount(Pages);
        mapped.Should().OnlyContain(pfn => _memory.PageRefCount(pfn) > 0);

        _mm.Exit();

        mirror.Events.Should().Equal(
            new MmuNotifierRange(0, ulong.MaxValue, MmuNotifierEvent.Release, Blockable: true),
            new MmuNotifierRange(0, ulong.MaxValue, MmuNotifierEvent.Unmap, Blockable: true));
        mapped.Should().OnlyContain(pfn => _memory.PageRefCount(pfn) == 0, "exit freed every page");
        mirror.MappedFrames().Should().BeEmpty("the UNMAP invalidation dropped the device mappings of the freed pages");
        mirror.Notifier.Remove();
    }

    [Fact]
    public void ClassicNotifiersGetTheReleaseAndNothingAfterItWhileIntervalsAlsoGetTheUnmap()
    {
        MapWritten(Pages);
        var log = new List<string>();
        var intervals = new RecordingIntervalOps(log);
        MmuIntervalNotifier sub = MmuIntervalNotifier.Insert(_mm, Base, Pages * Page, intervals);
        MmuNotifierSubscriptions subscriptions = MmuNotifierSubscriptions.Of(_mm);
        MmuNotifier classic = subscriptions.Register(new RecordingNotifierOps("classic", log));

        _mm.Exit();

        log.Should().Equal($"interval {Base:x} Release", "classic release", $"interval {Base:x} Unmap");
        subscriptions.NotifierCount.Should().Be(0);
        subscriptions.IsInvalidating.Should().BeFalse();
        subscriptions.ActiveInvalidateRanges.Should().Be(0);
        subscriptions.Unregister(classic);
        sub.Remove();
        log.Should().HaveCount(3, "unregistering after the release calls nothing again");
    }

    [Fact]
    public void AnExitWithNoAreaDeliversOnlyTheRelease()
    {
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier sub = MmuIntervalNotifier.Insert(_mm, 0, ulong.MaxValue, ops);

        _mm.Exit();

        ops.Calls().Select(c => c.Range.Event).Should().Equal(MmuNotifierEvent.Release);
        sub.Remove();
    }

    [Fact]
    public void InsertAndRegisterAfterTheExitFailWithEinvalNamingTheAddressSpaceAndChangeNothing()
    {
        MapWritten(1);
        var ops = new RecordingIntervalOps();
        MmuIntervalNotifier watching = MmuIntervalNotifier.Insert(_mm, Base, Page, ops);
        MmuNotifierSubscriptions subscriptions = MmuNotifierSubscriptions.Of(_mm);
        _mm.Exit();
        ulong sequence = subscriptions.InvalidateSequence;
        int calls = ops.Calls().Count;

        Action insert = () => subscriptions.Insert(Base, Page, ops);
        Action insertByMm = () => MmuIntervalNotifier.Insert(_mm, Base, Page, ops);
        Action register = () => subscriptions.Register(new RecordingNotifierOps("late", []));

        insert.Should().ThrowExactly<HmmException>().Where(e => e.Error == Errno.EINVAL && e.Message.Contains("'exiting'"));
        insertByMm.Should().ThrowExactly<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        register.Should().ThrowExactly<HmmException>().Where(e => e.Error == Errno.EINVAL && e.Message.Contains("'exiting'"));
        subscriptions.IntervalTreeCount.Should().Be(1);
        subscriptions.NotifierCount.Should().Be(0);
        subscriptions.InvalidateSequence.Should().Be(sequence);
        ops.Calls().Should().HaveCount(calls);
        watching.Remove();
    }

    private ulong MapWritten(int pages)
    {
        ulong a = _mm.Mmap(Base, (ulong)pages * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
        _mm.Write(a, new byte[pages * (int)Page]);
        return a;
    }

    /// <summary>
    /// A mirror that keeps device PTEs (virtual page to frame) and drops them on every invalidation except the
    /// release, relying on the exit's unmap for that, as the kernel allows.
    /// </summary>
    private sealed class UnmapOnlyMirror : IMmuIntervalNotifierOps
    {
        private readonly Lock _deviceLock = new();
        private readonly Dictionary<ulong, Pfn> _devicePtes = [];
        private readonly List<MmuNotifierRange> _events = [];
        private readonly Mm _mm;

        public UnmapOnlyMirror(Mm mm, ulong start, ulong length)
        {
            _mm = mm;
            Notifier = MmuIntervalNotifier.Insert(mm, start, length, this);
        }

        public MmuIntervalNotifier Notifier { get; }

        public List<MmuNotifierRange> Events
        {
            get
            {
                lock (_deviceLock)
                {
                    return [.. _events];
                }
            }
        }

        public Pfn[] MappedFrames()
        {
            lock (_deviceLock)
            {
                return [.. _devicePtes.Values];
            }
        }

        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            lock (_deviceLock)
            {
                subscription.SetSequence(currentSequence);
                _events.Add(range);
                if (range.Event != MmuNotifierEvent.Release)
                {
                    foreach (ulong address in _devicePtes.Keys)
                    {
                        if (address >= range.Start && address < range.End)
                        {
                            _devicePtes.Remove(address);
                        }
                    }
                }
            }

            return true;
        }

        public Errno Fault(ulong start, int pages)
        {
            var request = new HmmRangeRequest(Notifier, start, start + ((ulong)pages * Page))
            {
                DefaultFlags = HmmPfn.RequestFault | HmmPfn.RequestWrite,
            };
            for (int attempt = 0; attempt < 100; attempt++)
            {
                request.ReadBegin();
                Errno error;
                using (_mm.MmapReadLock())
                {
                    error = request.Fault();
                }

                if (error == Errno.EBUSY)
                {
                    continue;
                }

                if (error != Errno.None)
                {
                    return error;
                }

                lock (_deviceLock)
                {
                    if (request.ReadRetry())
                    {
                        continue;
                    }

                    for (int i = 0; i < pages; i++)
                    {
                        _devicePtes[start + ((ulong)i * Page)] = HmmPfn.ToPfn(request.HmmPfns[i]);
                    }

                    return Errno.None;
                }
            }

            return Errno.EBUSY;
        }
    }
}
