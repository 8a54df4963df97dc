using FluentAssertions;
using Xunit;

namespace Hmm.Tests.AddressSpace;

public class PteTests
{
    public static TheoryData<ulong> Frames() => [1UL, 2UL, 0x1234UL, 0xdead_beefUL, Pfn.Limit - 1];

    public static TheoryData<PteKind, ulong, bool> SoftwareEntries()
    {
        var data = new TheoryData<PteKind, ulong, bool>();
        foreach (PteKind kind in new[] { PteKind.DevicePrivate, PteKind.Migration, PteKind.DeviceExclusive })
        {
            foreach (ulong pfn in new[] { 0UL, 1UL, 0x1234UL, Pfn.Limit - 1 })
            {
                data.Add(kind, pfn, false);
                data.Add(kind, pfn, true);
            }
        }

        return data;
    }

    [Fact]
    public void TheEmptyEntryIsNone()
    {
        Pte none = default;

        none.Raw.Should().Be(0);
        none.IsNone.Should().BeTrue();
        none.IsPresent.Should().BeFalse();
        none.IsWritable.Should().BeFalse();
        none.IsDirty.Should().BeFalse();
        none.Kind.Should().Be(PteKind.None);
        none.Pfn.Should().Be(new Pfn(0));
        none.ToString().Should().Be("pte none");
    }

    [Theory]
    [MemberData(nameof(Frames))]
    public void PresentEntriesRoundTrip(ulong frame)
    {
        foreach (bool writable in new[] { false, true })
        {
            foreach (bool dirty in new[] { false, true })
            {
                Pte pte = Pte.Present(new Pfn(frame), writable, dirty);

                pte.Kind.Should().Be(PteKind.Present);
                pte.IsNone.Should().BeFalse();
                pte.IsPresent.Should().BeTrue();
                pte.Pfn.Should().Be(new Pfn(frame));
                pte.IsWritable.Should().Be(writable);
                pte.IsDirty.Should().Be(dirty);
                (pte.Raw & Pte.UserBit).Should().NotBe(0);
                (pte.Raw & Pte.AccessedBit).Should().NotBe(0);
                (pte.Raw >> 12).Should().Be(frame, "the frame sits in bits 12 and up");
                (pte.Raw >> 52).Should().Be(0);
                new Pte(pte.Raw).Should().Be(pte);
            }
        }
    }

    [Fact]
    public void PresentEntryUsesTheX86BitPositions()
    {
        Pte pte = Pte.Present(new Pfn(0x5), writable: true, dirty: true);

        pte.Raw.Should().Be((0x5UL << 12) | Pte.PresentBit | Pte.WriteBit | Pte.UserBit | Pte.AccessedBit | Pte.DirtyBit);
        (Pte.PresentBit, Pte.WriteBit, Pte.UserBit, Pte.AccessedBit, Pte.DirtyBit).Should().Be((1UL, 2UL, 4UL, 0x20UL, 0x40UL));
    }

    [Theory]
    [MemberData(nameof(SoftwareEntries))]
    public void SoftwareEntriesRoundTrip(PteKind kind, ulong frame, bool writable)
    {
        Pte pte = Pte.Software(kind, new Pfn(frame), writable);

        pte.Kind.Should().Be(kind);
        pte.IsNone.Should().BeFalse("even a software entry for frame 0 is not empty");
        pte.IsPresent.Should().BeFalse();
        pte.Pfn.Should().Be(new Pfn(frame));
        pte.IsWritable.Should().Be(writable);
        pte.IsDirty.Should().BeFalse();
        new Pte(pte.Raw).Should().Be(pte);
        pte.ToString().Should().Be($"pte {kind} {new Pfn(frame)}{(writable ? " rw" : " ro")}");
    }

    [Theory]
    [MemberData(nameof(SoftwareEntries))]
    public void WriteProtectingASoftwareEntryKeepsItsKindAndFrame(PteKind kind, ulong frame, bool writable)
    {
        Pte pte = Pte.Software(kind, new Pfn(frame), writable).WriteProtected();

        (pte.Kind, pte.Pfn, pte.IsWritable, pte.IsPresent).Should().Be((kind, new Pfn(frame), false, false));
        pte.Should().Be(Pte.Software(kind, new Pfn(frame), writable: false));
    }

    [Theory]
    [MemberData(nameof(Frames))]
    public void WriteProtectingAPresentEntryClearsOnlyTheWriteBit(ulong frame)
    {
        Pte pte = Pte.Present(new Pfn(frame), writable: true, dirty: true);

        Pte readOnly = pte.WriteProtected();

        readOnly.Raw.Should().Be(pte.Raw & ~Pte.WriteBit);
        (readOnly.IsPresent, readOnly.IsWritable, readOnly.IsDirty, readOnly.Pfn).Should().Be((true, false, true, new Pfn(frame)));
        readOnly.WriteProtected().Should().Be(readOnly);
    }

    [Fact]
    public void KindsAreDistinctForTheSameFrame()
    {
        var frame = new Pfn(77);
        Pte[] entries =
        [
            Pte.Present(frame, writable: true),
            Pte.Software(PteKind.DevicePrivate, frame, writable: true),
            Pte.Software(PteKind.Migration, frame, writable: true),
            Pte.Software(PteKind.DeviceExclusive, frame, writable: true),
        ];

        entries.Select(e => e.Raw).Should().OnlyHaveUniqueItems();
        entries.Select(e => e.Kind).Should().Equal(PteKind.Present, PteKind.DevicePrivate, PteKind.Migration, PteKind.DeviceExclusive);
    }

    [Theory]
    [InlineData(PteKind.None)]
    [InlineData(PteKind.Present)]
    [InlineData((PteKind)4)]
    [InlineData((PteKind)15)]
    public void SoftwareRejectsKindsThatAreNotSoftwareEntries(PteKind kind)
    {
        Action create = () => Pte.Software(kind, new Pfn(1), writable: false);

        create.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("kind");
    }

    [Fact]
    public void PresentToStringShowsFrameAndPermission()
    {
        Pte.Present(new Pfn(0x1a), writable: false).ToString().Should().Be("pte Present pfn 0x1a ro");
        Pte.Present(new Pfn(0x1a), writable: true, dirty: true).ToString().Should().Be("pte Present pfn 0x1a rw dirty");
    }
}
