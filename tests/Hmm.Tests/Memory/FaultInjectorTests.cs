using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Memory;

public class FaultInjectorTests
{
    [Fact]
    public void UnarmedPointsNeverFail()
    {
        var injector = new FaultInjector();

        foreach (FaultPoint point in Enum.GetValues<FaultPoint>())
        {
            injector.ShouldFail(point).Should().BeFalse();
        }
    }

    [Fact]
    public void FailNextFailsExactlyOnePassAfterTheSkippedOnes()
    {
        var injector = new FaultInjector();

        injector.FailNext(FaultPoint.MemremapInitPages, skip: 2);

        injector.ShouldFail(FaultPoint.MemremapInitPages).Should().BeFalse();
        injector.ShouldFail(FaultPoint.MemremapInitPages).Should().BeFalse();
        injector.ShouldFail(FaultPoint.MemremapInitPages).Should().BeTrue();
        injector.ShouldFail(FaultPoint.MemremapInitPages).Should().BeFalse("the arming is consumed by the failure");
    }

    [Fact]
    public void ArmingOnePointLeavesTheOthersAlone()
    {
        var injector = new FaultInjector();

        injector.FailNext(FaultPoint.DevmAddAction);

        injector.ShouldFail(FaultPoint.PageAllocation).Should().BeFalse();
        injector.ShouldFail(FaultPoint.MemremapAddSections).Should().BeFalse();
        injector.ShouldFail(FaultPoint.DevmAddAction).Should().BeTrue();
    }

    [Fact]
    public void ArmingAgainReplacesTheSkipCount()
    {
        var injector = new FaultInjector();

        injector.FailNext(FaultPoint.PageAllocation, skip: 5);
        injector.FailNext(FaultPoint.PageAllocation, skip: 0);

        injector.ShouldFail(FaultPoint.PageAllocation).Should().BeTrue();
    }

    [Fact]
    public void ResetDisarmsEveryPoint()
    {
        var injector = new FaultInjector();
        injector.FailNext(FaultPoint.PageAllocation);
        injector.FailNext(FaultPoint.MemremapPublishLookup);

        injector.Reset();

        injector.ShouldFail(FaultPoint.PageAllocation).Should().BeFalse();
        injector.ShouldFail(FaultPoint.MemremapPublishLookup).Should().BeFalse();
    }

    [Fact]
    public void NegativeSkipIsRejectedAndArmsNothing()
    {
        var injector = new FaultInjector();

        Action arm = () => injector.FailNext(FaultPoint.PageAllocation, skip: -1);

        arm.Should().Throw<ArgumentOutOfRangeException>();
        injector.ShouldFail(FaultPoint.PageAllocation).Should().BeFalse();
    }

    [Fact]
    public void UnknownPointIsRejected()
    {
        var injector = new FaultInjector();

        Action arm = () => injector.FailNext((FaultPoint)42);

        arm.Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void PageAllocationFailureHitsTheAllocationAfterTheSkippedOnes()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation, skip: 2);

        memory.TryAllocatePage(out _).Should().BeTrue();
        memory.TryAllocatePage(out _).Should().BeTrue();
        ulong freeBefore = memory.FreeRamPages;

        memory.TryAllocatePage(out Pfn failed).Should().BeFalse();

        failed.Should().Be(default(Pfn));
        memory.FreeRamPages.Should().Be(freeBefore);
        memory.TryAllocatePage(out _).Should().BeTrue("the injected failure disarms itself");
    }

    [Fact]
    public void InjectedAllocationFailureMakesAllocatePageThrowENOMEMAndChangesNothing()
    {
        PhysicalMemory memory = TestKit.NewMemory(ramMiB: 4);
        Pfn held = memory.AllocatePage();
        MemorySnapshot before = MemorySnapshot.Take(memory, held, held + 1);
        memory.FaultInjection.FailNext(FaultPoint.PageAllocation);

        Action allocate = () => memory.AllocatePage();

        allocate.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        MemorySnapshot.Take(memory, held, held + 1).Should().Be(before);
        memory.AllocatePage().Should().Be(held + 1, "the failure consumed no frame");
    }
}
