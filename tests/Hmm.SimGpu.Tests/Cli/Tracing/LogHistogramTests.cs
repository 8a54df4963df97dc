using FluentAssertions;
using Hmm.Cli.Tracing;
using Xunit;

namespace Hmm.SimGpu.Tests.Cli.Tracing;

public sealed class LogHistogramTests
{
    [Fact]
    public void SmallValuesAreExactAndLargeOnesWithinOnePercent()
    {
        var histogram = new LogHistogram();
        for (long v = 1; v <= 100_000; v++)
        {
            histogram.Record(v);
        }

        histogram.Count.Should().Be(100_000);
        histogram.Min.Should().Be(1);
        histogram.Max.Should().Be(100_000);
        histogram.Mean.Should().Be(50_000.5);
        histogram.Percentile(0.1).Should().Be(100, "values below 256 are kept exactly");
        histogram.Percentile(50).Should().BeInRange(49_500, 50_000);
        histogram.Percentile(99).Should().BeInRange(98_010, 99_000);
        histogram.Percentile(100).Should().Be(100_000);
        histogram.PowerOfTwoBuckets().Should().HaveCount(17);
        histogram.PowerOfTwoBuckets()[^1].Should().Be((65_536L, 131_071L, 100_000L - 65_535));
        histogram.PowerOfTwoBuckets().Sum(b => b.Count).Should().Be(100_000);
    }

    [Fact]
    public void AnEmptyHistogramReportsZeros()
    {
        var histogram = new LogHistogram();

        histogram.Percentile(50).Should().Be(0);
        histogram.Max.Should().Be(0);
        histogram.Mean.Should().Be(0);
        histogram.PowerOfTwoBuckets().Should().BeEmpty();
    }
}
