using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Mirroring;

/// <summary>
/// <see cref="HmmRangeRequest"/>: the heap form of <c>struct hmm_range</c> that an asynchronous driver keeps across
/// awaits and reuses for every retry.
/// </summary>
public class HmmRangeRequestTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x4000_0000;
    private const ulong FaultWrite = HmmPfn.RequestFault | HmmPfn.RequestWrite;

    private readonly PhysicalMemory _memory = new(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });
    private readonly Mm _mm;

    public HmmRangeRequestTests()
    {
        _mm = new Mm(_memory);
    }

    [Fact]
    public void FaultFillsTheOwnedArrayLikeAnHmmRangeOverTheSameState()
    {
        ulong a = Map(8);
        _mm.Write(a, [1, 2, 3]);
        using var driver = new AsyncMirror(_mm, a, 8);
        var request = new HmmRangeRequest(driver.Notifier, a, a + (8 * Page)) { DefaultFlags = HmmPfn.RequestFault };

        request.ReadBegin().Should().Be(request.NotifierSequence);
        Errno result;
        using (_mm.MmapReadLock())
        {
            result = request.Fault();
        }

        result.Should().Be(Errno.None);
        request.ReadRetry().Should().BeFalse();
        request.CheckRetry().Should().BeFalse();
        request.HmmPfns.Length.Should().Be(8);
        request.HmmPfns[0].Should().Be(_mm.ReadPte(a).Pfn.Value | HmmPfn.Valid | HmmPfn.Write);
        request.HmmPfns[1..].ToArray().Should().OnlyContain(p => p == (PhysicalMemory.ZeroPage.Value | HmmPfn.Valid));
    }

    [Fact]
    public async Task AnAsyncDriverRetriesAfterAnInvalidationAcrossAnAwaitWithTheSameRequest()
    {
        ulong a = Map(4);
        using var driver = new AsyncMirror(_mm, a, 4);
        var request = new HmmRangeRequest(driver.Notifier, a, a + (4 * Page)) { DefaultFlags = FaultWrite };
        int attempts = 0;

        // The first attempt is invalidated while the driver awaits between the walk and the device update.
        Errno result = await driver.MirrorAsync(request, afterWalk: () =>
        {
            if (++attempts == 1)
            {
                _mm.Madvise(a, Page, Advice.DontNeed);
            }
        });

        result.Should().Be(Errno.None);
        attempts.Should().Be(2, "ReadRetry caught the invalidation and the same request was faulted again");
        driver.MappedPages.Should().Be(4);
        for (ulong page = 0; page < 4; page++)
        {
            driver.Entry(a + (page * Page)).Should().Be(_mm.ReadPte(a + (page * Page)).Pfn.Value | HmmPfn.Valid | HmmPfn.Write);
        }
    }

    [Fact]
    public void FaultOverAPopulatedRangeAllocatesNothing()
    {
        const int pages = 512;
        ulong a = Map(pages);
        _mm.Write(a, new byte[pages * (int)Page]);
        using var driver = new AsyncMirror(_mm, a, pages);
        var request = new HmmRangeRequest(driver.Notifier, a, a + (pages * Page)) { DefaultFlags = FaultWrite };
        for (int i = 0; i < 3; i++)
        {
            Attempt(request).Should().Be(Errno.None);
        }

        int failures = 0;
        long allocated = AllocationProbe.FewestBytesAllocated(() =>
        {
            for (int i = 0; i < 100; i++)
            {
                failures += Attempt(request) == Errno.None ? 0 : 1;
            }
        });

        failures.Should().Be(0);
        allocated.Should().Be(0, "ReadBegin, Fault and ReadRetry over a populated range must not allocate");
    }

    public static TheoryData<ulong, ulong> BadRanges => new()
    {
        { Base + 1, Base + Page },
        { Base, Base + Page + 1 },
        { Base, Base },
        { Base + Page, Base },
        { 0, ulong.MaxValue & ~(Page - 1) },
    };

    [Theory]
    [MemberData(nameof(BadRanges))]
    public void BadRangesAreRefusedWithEinval(ulong start, ulong end)
    {
        ulong a = Map(1);
        using var driver = new AsyncMirror(_mm, a, 1);

        Action create = () => _ = new HmmRangeRequest(driver.Notifier, start, end);

        create.Should().ThrowExactly<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
    }

    [Fact]
    public void ANullNotifierIsRefused()
    {
        Action create = () => _ = new HmmRangeRequest(null!, Base, Base + Page);

        create.Should().ThrowExactly<ArgumentNullException>();
    }

    private static Errno Attempt(HmmRangeRequest request)
    {
        request.ReadBegin();
        Errno result;
        using (request.Notifier.Mm.MmapReadLock())
        {
            result = request.Fault();
        }

        return result == Errno.None && request.ReadRetry() ? Errno.EBUSY : result;
    }

    private ulong Map(ulong pages) =>
        _mm.Mmap(Base, pages * Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);

    /// <summary>A driver whose device lock is a <see cref="SemaphoreSlim"/>, so its mirror loop can await it.</summary>
    private sealed class AsyncMirror : IMmuIntervalNotifierOps, IDisposable
    {
        private readonly SemaphoreSlim _deviceLock = new(1, 1);
        private readonly Dictionary<ulong, ulong> _table = [];
        private readonly Mm _mm;

        public AsyncMirror(Mm mm, ulong start, ulong pages)
        {
            _mm = mm;
            Notifier = MmuIntervalNotifier.Insert(mm, start, pages * Page, this);
        }

        public MmuIntervalNotifier Notifier { get; }

        public int MappedPages => _table.Count;

        public void Dispose() => _deviceLock.Dispose();

        public ulong Entry(ulong address) => _table.TryGetValue(address, out ulong entry) ? entry : 0;

        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence)
        {
            if (!range.Blockable && !_deviceLock.Wait(0))
            {
                return false;
            }

            if (range.Blockable)
            {
                _deviceLock.Wait();
            }

            try
            {
                subscription.SetSequence(currentSequence);
                foreach (ulong address in _table.Keys)
                {
                    if (address >= range.Start && address < range.End)
                    {
                        _table.Remove(address);
                    }
                }
            }
            finally
            {
                _deviceLock.Release();
            }

            return true;
        }

        // The retry loop of HmmRangeRequest's documentation.
        public async Task<Errno> MirrorAsync(HmmRangeRequest request, Action afterWalk)
        {
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

                await Task.Yield();
                afterWalk();
                await _deviceLock.WaitAsync();
                try
                {
                    if (request.ReadRetry())
                    {
                        continue;
                    }

                    for (int i = 0; i < request.HmmPfns.Length; i++)
                    {
                        _table[request.Start + ((ulong)i * Page)] = request.HmmPfns[i];
                    }

                    return Errno.None;
                }
                finally
                {
                    _deviceLock.Release();
                }
            }

            return Errno.EBUSY;
        }
    }
}
