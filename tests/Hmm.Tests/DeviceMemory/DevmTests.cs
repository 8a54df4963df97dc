using FluentAssertions;
using Hmm.Tests.Memory;
using Xunit;

namespace Hmm.Tests.DeviceMemory;

public class DevmTests
{
    private readonly PhysicalMemory _memory = TestKit.NewMemory(ramMiB: 4);
    private readonly TestDriver _driver = new();
    private readonly ManagedDevice _device;

    public DevmTests()
    {
        _device = new ManagedDevice(_memory, "gpu0");
    }

    [Fact]
    public async Task RequestFreeMemRegionReleasesTheRegionAtUnbind()
    {
        PhysicalRange region = Devm.RequestFreeRegion(_device, 4 * TestKit.MiB);

        _memory.Resources().Should().Contain(new IoResource("gpu0", region));
        await _device.UnbindAsync().WaitAsync(TestKit.Timeout);

        _memory.Resources().Should().ContainSingle().Which.Name.Should().Be(PhysicalMemory.SystemRamResourceName);
    }

    [Fact]
    public void RequestFreeMemRegionWithAnInjectedDevmFailureReleasesTheRegionAndThrowsENOMEM()
    {
        MemorySnapshot before = MemorySnapshot.Take(_memory);
        _memory.FaultInjection.FailNext(FaultPoint.DevmAddAction);

        Action request = () => Devm.RequestFreeRegion(_device, 4 * TestKit.MiB);

        request.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        MemorySnapshot.Take(_memory).Should().Be(before);
    }

    [Fact]
    public void RequestFreeMemRegionWithABadLengthThrowsEINVALAndClaimsNothing()
    {
        MemorySnapshot before = MemorySnapshot.Take(_memory);

        Action request = () => Devm.RequestFreeRegion(_device, TestKit.MiB);

        request.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        MemorySnapshot.Take(_memory).Should().Be(before);
    }

    [Fact]
    public async Task MemremapPagesIsTornDownWhenTheDeviceUnbinds()
    {
        PhysicalRange region = Devm.RequestFreeRegion(_device, 4 * TestKit.MiB);
        DevPagemap pagemap = Devm.Map(_device, _driver.PrivateOptions(region));

        _device.Pagemaps().Should().ContainSingle().Which.Should().BeSameAs(pagemap);
        await _device.UnbindAsync().WaitAsync(TestKit.Timeout);

        pagemap.State.Should().Be(DevPagemapState.Removed);
        _memory.IsPresent(region.StartPfn).Should().BeFalse();
        _memory.Resources().Should().ContainSingle("the pagemap went first, so the region could be released");
        _device.Pagemaps().Should().BeEmpty();
    }

    [Theory]
    [InlineData(MemoryType.DevicePrivate)]
    [InlineData(MemoryType.Generic)]
    public void MemremapPagesWithAnInjectedDevmFailureTearsTheMappingDownAtOnce(MemoryType type)
    {
        PhysicalRange range = TestKit.DeviceRange(0, lengthMiB: 4);
        MemorySnapshot before = MemorySnapshot.Take(_memory, TestKit.Probes(range));
        _memory.FaultInjection.FailNext(FaultPoint.DevmAddAction);

        Action register = () => Devm.Map(_device, _driver.Options(type, range));

        register.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENOMEM);
        MemorySnapshot.Take(_memory, TestKit.Probes(range)).Should().Be(before);
        DevPagemap.Get(_memory, range.StartPfn).HasValue.Should().BeFalse();
        _device.Pagemaps().Should().BeEmpty();
        _memory.FindZoneDeviceOwner(1).Should().BeNull();

        DevPagemap again = Devm.Map(_device, _driver.Options(type, range));
        again.Id.Should().Be(1);
        _memory.Page(range.StartPfn).PagemapId.Should().Be(again.Id);
    }

    [Fact]
    public void MemremapPagesThatFailsToRegisterAttachesNothing()
    {
        Action register = () => Devm.Map(_device, _driver.PrivateOptions(new PhysicalRange(0, 2 * TestKit.MiB)));

        register.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.ENXIO);
        _device.Pagemaps().Should().BeEmpty();
    }

    [Fact]
    public async Task MemunmapPagesAsyncReleasesThePagemapBeforeUnbind()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(_device, _driver.PrivateOptions(range));
        pagemap.InitDevicePage(range.StartPfn);

        Task early = Devm.UnmapAsync(_device, pagemap);

        early.IsCompleted.Should().BeFalse("a device page is still referenced");
        pagemap.State.Should().Be(DevPagemapState.Dying);
        _device.IsBound.Should().BeTrue();
        _memory.PutPage(range.StartPfn);
        await early.WaitAsync(TestKit.Timeout);

        pagemap.State.Should().Be(DevPagemapState.Removed);
        _device.Pagemaps().Should().BeEmpty();
        Memremap.Map(_memory, _driver.PrivateOptions(range)).State.Should().Be(DevPagemapState.Live);
        await _device.UnbindAsync().WaitAsync(TestKit.Timeout);
    }

    [Fact]
    public async Task MemunmapPagesAsyncDetachesTheReleaseActionSoUnbindDoesNotRunItAgain()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap pagemap = Devm.Map(_device, _driver.PrivateOptions(range));
        await Devm.UnmapAsync(_device, pagemap).WaitAsync(TestKit.Timeout);
        DevPagemap successor = Memremap.Map(_memory, _driver.PrivateOptions(range));

        await _device.UnbindAsync().WaitAsync(TestKit.Timeout);

        successor.State.Should().Be(DevPagemapState.Live, "the device no longer manages that range");
        _memory.IsPresent(range.StartPfn).Should().BeTrue();

        Action again = () => Devm.UnmapAsync(_device, pagemap);
        again.Should().Throw<KernelBugException>("the release action is gone: devm_release_action WARNs");
        successor.State.Should().Be(DevPagemapState.Live);
    }

    [Fact]
    public async Task UnmapAsyncOfAPagemapTheDeviceDoesNotManageIsAKernelBugThrownAtOnceAndChangesNothing()
    {
        PhysicalRange range = TestKit.DeviceRange(0);
        DevPagemap unmanaged = Memremap.Map(_memory, _driver.PrivateOptions(range));
        var other = new ManagedDevice(_memory, "gpu1");
        DevPagemap othersPagemap = Devm.Map(other, _driver.PrivateOptions(TestKit.DeviceRange(4)));
        DevPagemap mine = Devm.Map(_device, _driver.PrivateOptions(TestKit.DeviceRange(8)));
        MemorySnapshot before = MemorySnapshot.Take(_memory, [.. TestKit.Probes(range), .. TestKit.Probes(TestKit.DeviceRange(4))]);

        Action unmapUnmanaged = () => Devm.UnmapAsync(_device, unmanaged);
        Action unmapOthers = () => Devm.UnmapAsync(_device, othersPagemap);

        unmapUnmanaged.Should().Throw<KernelBugException>().WithMessage("*does not manage*");
        unmapOthers.Should().Throw<KernelBugException>();
        MemorySnapshot.Take(_memory, [.. TestKit.Probes(range), .. TestKit.Probes(TestKit.DeviceRange(4))]).Should().Be(before);
        unmanaged.State.Should().Be(DevPagemapState.Live);
        othersPagemap.State.Should().Be(DevPagemapState.Live);
        unmanaged.ReferenceCount.Should().Be(1);

        await _device.UnbindAsync().WaitAsync(TestKit.Timeout);
        mine.State.Should().Be(DevPagemapState.Removed, "the device's own action was not consumed by the refused calls");
        othersPagemap.State.Should().Be(DevPagemapState.Live);
        await other.UnbindAsync().WaitAsync(TestKit.Timeout);
        othersPagemap.State.Should().Be(DevPagemapState.Removed, "the other device's action is still attached");
    }

    [Fact]
    public void DevmCallsRejectNullArguments()
    {
        DevPagemap pagemap = Memremap.Map(_memory, _driver.PrivateOptions(TestKit.DeviceRange(0)));

        Action request = () => Devm.RequestFreeRegion(null!, 2 * TestKit.MiB);
        Action remapNoDevice = () => Devm.Map(null!, _driver.PrivateOptions(TestKit.DeviceRange(2)));
        Action remapNoOptions = () => Devm.Map(_device, null!);
        Action unmapNoDevice = () => Devm.UnmapAsync(null!, pagemap);
        Action unmapNoPagemap = () => Devm.UnmapAsync(_device, null!);

        request.Should().Throw<ArgumentNullException>();
        remapNoDevice.Should().Throw<ArgumentNullException>();
        remapNoOptions.Should().Throw<ArgumentNullException>();
        unmapNoDevice.Should().Throw<ArgumentNullException>();
        unmapNoPagemap.Should().Throw<ArgumentNullException>();
        _memory.IsPresent(TestKit.DeviceRange(2).StartPfn).Should().BeFalse();
    }
}
