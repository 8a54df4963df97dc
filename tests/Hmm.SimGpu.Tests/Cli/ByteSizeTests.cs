using FluentAssertions;
using Hmm.Cli;
using Xunit;

namespace Hmm.SimGpu.Tests.Cli;

public sealed class ByteSizeTests
{
    [Theory]
    [InlineData("4096", 4096UL)]
    [InlineData("64MiB", 64UL << 20)]
    [InlineData("64M", 64UL << 20)]
    [InlineData("64mb", 64UL << 20)]
    [InlineData("16GiB", 16UL << 30)]
    [InlineData("1.5G", 3UL << 29)]
    [InlineData("8 KiB", 8192UL)]
    [InlineData("2T", 2UL << 40)]
    public void SizesParseWithBinaryUnits(string text, ulong expected)
    {
        ByteSize.TryParse(text, out ulong bytes).Should().BeTrue();
        bytes.Should().Be(expected);
    }

    [Theory]
    [InlineData("")]
    [InlineData("MiB")]
    [InlineData("-1")]
    [InlineData("12XB")]
    [InlineData("0.3B")]
    [InlineData("99999999999T")]
    public void NonSizesAreRefused(string text)
    {
        ByteSize.TryParse(text, out _).Should().BeFalse();
    }

    [Theory]
    [InlineData(96UL << 20, "96 MiB")]
    [InlineData(1536UL << 20, "1.5 GiB")]
    [InlineData(100UL, "100 B")]
    public void SizesFormatWithTheLargestUnit(ulong bytes, string expected)
    {
        ByteSize.Format(bytes).Should().Be(expected);
    }
}
