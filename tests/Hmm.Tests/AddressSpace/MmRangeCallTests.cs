using FluentAssertions;
using Xunit;
using static Hmm.Tests.TestKit;

namespace Hmm.Tests.AddressSpace;

/// <summary>One of the calls that act on a range of areas.</summary>
public enum RangeCall
{
    Munmap,
    Mprotect,
    MadviseDontNeed,
    MadviseFree,
}

/// <summary>What munmap, mprotect and madvise share: their notifier event, zero lengths, unmapped ranges and calls after exit.</summary>
public class MmRangeCallTests
{
    private const ulong Base = 0x4000_0000;

    private readonly PhysicalMemory _memory = NewMemory();
    private readonly Mm _mm;

    public MmRangeCallTests()
    {
        _mm = new Mm(_memory);
    }

    public static TheoryData<RangeCall> AllCalls => [RangeCall.Munmap, RangeCall.Mprotect, RangeCall.MadviseDontNeed, RangeCall.MadviseFree];

    /// <summary>The calls that accept a zero length and an unmapped range's ENOMEM (munmap takes neither).</summary>
    public static TheoryData<RangeCall> CoveringCalls => [RangeCall.Mprotect, RangeCall.MadviseDontNeed, RangeCall.MadviseFree];

    public static TheoryData<RangeCall, ulong, ulong> RangesNotEntirelyMapped
    {
        get
        {
            var data = new TheoryData<RangeCall, ulong, ulong>();
            foreach (RangeCall call in new[] { RangeCall.Mprotect, RangeCall.MadviseDontNeed, RangeCall.MadviseFree })
            {
                data.Add(call, Base + 0x3000, 0x3000);
                data.Add(call, Base, 0xA000);
                data.Add(call, Base - 0x1000, 0x2000);
                data.Add(call, Base + 0x5000, 0x1000);
                data.Add(call, 0x7000_0000_0000, 0x1000);
                data.Add(call, Mm.TaskSize - 0x1000, 0x2000);
                data.Add(call, Mm.TaskSize, 0x1000);
            }

            return data;
        }
    }

    [Theory]
    [InlineData(RangeCall.Munmap, MmuNotifierEvent.Unmap)]
    [InlineData(RangeCall.Mprotect, MmuNotifierEvent.ProtectionVma)]
    [InlineData(RangeCall.MadviseDontNeed, MmuNotifierEvent.Clear)]
    [InlineData(RangeCall.MadviseFree, MmuNotifierEvent.Clear)]
    public void TheCallNotifiesItsEventOverTheRequestedRange(RangeCall call, MmuNotifierEvent expected)
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        Fill(_mm, a, 4, seed: 1);
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        Invoke(call, a + Page, 2 * Page);

        chain.Starts.Should().Equal((a + Page, a + (3 * Page), expected));
        chain.ShouldBeBalanced();
    }

    [Theory]
    [MemberData(nameof(CoveringCalls))]
    public void ZeroLengthDoesNothingEvenWhereNothingIsMapped(RangeCall call)
    {
        ulong a = _mm.MapAnonymousAt(Base, 2);
        Fill(_mm, a, 2, seed: 1);
        MmSnapshot before = MmSnapshot.Capture(_mm);
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        Invoke(call, a, 0);
        Invoke(call, 0x7000_0000_0000, 0);

        before.ShouldBeUnchanged();
        chain.Calls.Should().BeEmpty();
    }

    [Theory]
    [MemberData(nameof(RangesNotEntirelyMapped))]
    public void RangesNotEntirelyMappedFailWithEnomemAndChangeNothing(RangeCall call, ulong address, ulong length)
    {
        MmSnapshot before = PopulatedSnapshot();
        RecordingNotifierChain chain = RecordingNotifierChain.InstallOn(_mm);

        ((Action)(() => Invoke(call, address, length))).ShouldFailWith(Errno.ENOMEM);

        before.ShouldBeUnchanged();
        chain.Calls.Should().BeEmpty();
        _mm.ShouldHold(Base, 4, seed: 1);
    }

    [Theory]
    [MemberData(nameof(AllCalls))]
    public void TheCallAfterExitFailsWithEsrchAndChangesNothing(RangeCall call)
    {
        PopulatedSnapshot();
        _mm.Exit();
        ulong free = _memory.FreeRamPages;

        ((Action)(() => Invoke(call, Base, Page))).ShouldFailWith(Errno.ESRCH);
        if (call != RangeCall.Munmap)
        {
            ((Action)(() => Invoke(call, Base, 0))).ShouldFailWith(Errno.ESRCH);
        }

        _memory.FreeRamPages.Should().Be(free);
    }

    private void Invoke(RangeCall call, ulong address, ulong length)
    {
        switch (call)
        {
            case RangeCall.Munmap:
                _mm.Munmap(address, length);
                break;
            case RangeCall.Mprotect:
                _mm.Mprotect(address, length, Protection.Read);
                break;
            case RangeCall.MadviseDontNeed:
                _mm.Madvise(address, length, Advice.DontNeed);
                break;
            default:
                _mm.Madvise(address, length, Advice.Free);
                break;
        }
    }

    /// <summary>[Base, +4 pages) private and written, a hole, then [Base + 6 pages, +4 pages) shared and written.</summary>
    private MmSnapshot PopulatedSnapshot()
    {
        ulong a = _mm.MapAnonymousAt(Base, 4);
        ulong b = _mm.Mmap(Base + (6 * Page), 4 * Page, Protection.ReadWrite, SharedAnonymous | MapFlags.FixedNoReplace);
        Fill(_mm, a, 4, seed: 1);
        Fill(_mm, b, 4, seed: 2);
        return MmSnapshot.Capture(_mm, (Base - Page, Base + (12 * Page)));
    }
}
