using FluentAssertions;
using Hmm.Drivers;
using Xunit;

namespace Hmm.SimGpu.Tests.Drivers.FaultServicing;

public sealed class LruResidencyPolicyTests
{
    [Fact]
    public void TheVictimIsTheLeastRecentlyPopulatedBlockOtherThanTheBusyOne()
    {
        var lru = new LruResidencyPolicy();
        lru.BlockPopulated(3);
        lru.BlockPopulated(1);
        lru.BlockPopulated(2);
        lru.BlockPopulated(3);   // refreshed on allocation

        lru.SelectVictim(busyBlock: -1).Should().Be(1);
        lru.SelectVictim(busyBlock: 1).Should().Be(2);
        lru.Count.Should().Be(3);
    }

    [Fact]
    public void EmptiedBlocksLeaveTheListAndIncompleteEvictionsMoveToTheEnd()
    {
        var lru = new LruResidencyPolicy();
        lru.BlockPopulated(0);
        lru.BlockPopulated(1);
        lru.BlockPopulated(2);

        lru.BlockEvictionIncomplete(0);
        lru.SelectVictim(-1).Should().Be(1);
        lru.BlockEmptied(1);
        lru.BlockEmptied(1);
        lru.BlockEmptied(99);
        lru.SelectVictim(-1).Should().Be(2);
        lru.BlockEmptied(2);
        lru.SelectVictim(0).Should().Be(-1, "the only block left is busy");
        lru.Count.Should().Be(1);
    }

    [Fact]
    public void FirstTouchSelectsTheFaultedPagesThatAreNotResident()
    {
        var lru = new LruResidencyPolicy();
        ulong[] faulted = [0b1111, 0, 0, 0, 0, 0, 0, 1UL << 63];
        ulong[] resident = [0b0101, 0, 0, 0, 0, 0, 0, 0];
        var migrate = new ulong[8];

        lru.SelectPagesToMigrate(0, 0x200000, faulted, resident, migrate);

        migrate.Should().Equal(0b1010UL, 0UL, 0UL, 0UL, 0UL, 0UL, 0UL, 1UL << 63);
    }

    [Fact]
    public void ANegativeBlockIsRejected()
    {
        var lru = new LruResidencyPolicy();

        lru.Invoking(l => l.BlockPopulated(-1)).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        lru.Invoking(l => l.BlockEvictionIncomplete(-2)).Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        lru.Count.Should().Be(0);
    }
}
