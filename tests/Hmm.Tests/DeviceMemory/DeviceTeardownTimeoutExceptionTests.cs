using FluentAssertions;
using Xunit;

namespace Hmm.Tests.DeviceMemory;

public class DeviceTeardownTimeoutExceptionTests
{
    [Fact]
    public void MessageNamesTheDeviceAndEachReferencedPage()
    {
        ReferencedPage[] pages = [new(new Pfn(0x1000), 2, 3, "vram"), new(new Pfn(0x1001), 1, 3, "vram")];

        var error = new DeviceTeardownTimeoutException("gpu0", TimeSpan.FromMilliseconds(250), pages, []);

        error.Error.Should().Be(Errno.ETIMEDOUT);
        error.ReferencedPages.Should().Equal(pages);
        error.Message.Should().Contain("gpu0").And.Contain("250 ms").And.Contain("2 device page(s)")
            .And.Contain("pfn 0x1000 (refcount 2, pagemap 3 'vram')")
            .And.Contain("pfn 0x1001 (refcount 1, pagemap 3 'vram')");
    }

    [Fact]
    public void MessageListsSixteenPagesAndCountsTheRest()
    {
        ReferencedPage[] pages = [.. Enumerable.Range(0, 20).Select(i => new ReferencedPage(new Pfn(0x2000 + (ulong)i), 1, 1, "vram"))];

        var error = new DeviceTeardownTimeoutException("gpu0", TimeSpan.FromSeconds(1), pages, []);

        error.Message.Should().Contain("pfn 0x200f").And.NotContain("pfn 0x2010").And.Contain("and 4 more");
        error.ReferencedPages.Should().HaveCount(20);
    }

    [Fact]
    public void ItIsAnHmmException()
    {
        var error = new DeviceTeardownTimeoutException("gpu0", TimeSpan.Zero, [], []);

        error.Should().BeAssignableTo<HmmException>();
        error.Message.Should().Contain("0 device page(s)");
    }

    [Fact]
    public void MessageNamesOutstandingLookupsPerPagemap()
    {
        PagemapLookups[] lookups = [new(3, "vram", 2), new(4, "bar", 1)];

        var error = new DeviceTeardownTimeoutException("gpu0", TimeSpan.FromMilliseconds(10), [], lookups);

        error.OutstandingLookups.Should().Equal(lookups);
        error.Message.Should().Contain("0 device page(s) still referenced")
            .And.Contain("3 pagemap lookup(s) not put")
            .And.Contain("pagemap 3 'vram' holds 2")
            .And.Contain("pagemap 4 'bar' holds 1");
    }
}
