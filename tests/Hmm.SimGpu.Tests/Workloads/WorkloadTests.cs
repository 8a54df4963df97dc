using FluentAssertions;
using Hmm.SimGpu;
using Xunit;

namespace Hmm.SimGpu.Tests.Workloads;

public sealed class WorkloadTests
{
    [Fact]
    public void StreamReadsAAndBAndWritesCAtTheSameIndex()
    {
        Workload stream = Workload.Create(WorkloadKind.Stream, 300, seed: 1);

        stream.Items.Should().Be(100);
        stream.InputPages.Should().Be(200);
        stream.InputPage(5, 0, 100).Should().Be(5);
        stream.InputPage(5, 1, 100).Should().Be(105);
        stream.OutputPage(5).Should().Be(205);
    }

    [Fact]
    public void RandomPicksAreUniformWithinTheExtentAndFollowTheSeed()
    {
        Workload random = Workload.Create(WorkloadKind.Random, 2000, seed: 3);
        Workload other = Workload.Create(WorkloadKind.Random, 2000, seed: 4);
        var picks = Enumerable.Range(0, 1000).Select(i => random.InputPage(i, 0, 100)).ToList();

        picks.Should().OnlyContain(page => page >= 0 && page < 100);
        picks.Distinct().Count().Should().BeGreaterThan(90, "1000 uniform picks over 100 pages hit nearly all of them");
        Enumerable.Range(0, 1000).Select(i => other.InputPage(i, 0, 100)).Should().NotEqual(picks);
        Enumerable.Range(0, 1000).Select(i => random.InputPage(i, 0, 100)).Should().Equal(picks, "a pick is a function of the seed and the item");
    }

    [Fact]
    public void StencilReadsTheRowsAroundItsOwnClampedToTheExtent()
    {
        Workload stencil = Workload.Create(WorkloadKind.Stencil, 200, seed: 1);

        Enumerable.Range(0, 3).Select(read => stencil.InputPage(0, read, 50)).Should().Equal(0L, 0L, 1L);
        Enumerable.Range(0, 3).Select(read => stencil.InputPage(10, read, 50)).Should().Equal(9L, 10L, 11L);
        Enumerable.Range(0, 3).Select(read => stencil.InputPage(49, read, 50)).Should().Equal(48L, 49L, 49L);
        stencil.OutputPage(10).Should().Be(110);
    }

    [Theory]
    [InlineData(WorkloadKind.Stream, 64)]
    [InlineData(WorkloadKind.Stream, 512)]
    [InlineData(WorkloadKind.Random, 128)]
    [InlineData(WorkloadKind.Stencil, 64)]
    [InlineData(WorkloadKind.Stencil, 512)]
    [InlineData(WorkloadKind.Stencil, 4096)]
    public void ARowComputedSliceBySliceFromOnlyTheWordsEachSliceReadsEqualsTheWholeRow(WorkloadKind kind, int sliceBytes)
    {
        Workload workload = Workload.Create(kind, 300, seed: 5);
        int reads = workload.ReadsPerItem;
        byte[] whole = new byte[4096];
        workload.Expected(7, 50, new byte[reads * 4096], whole);
        byte[] full = new byte[reads * 4096];
        for (int read = 0; read < reads; read++)
        {
            workload.InitialContents(workload.InputPage(7, read, 50), full.AsSpan(read * 4096, 4096));
        }

        byte[] sliced = new byte[4096];
        int words = sliceBytes / 8;
        for (int first = 0; first < 512; first += words)
        {
            byte[] inputs = new byte[reads * 4096];
            for (int read = 0; read < reads; read++)
            {
                (int inputFirst, int inputWords) = workload.InputWords(read, first, words);
                full.AsSpan((read * 4096) + (inputFirst * 8), inputWords * 8).CopyTo(inputs.AsSpan((read * 4096) + (inputFirst * 8)));
            }

            workload.Compute(7, 50, inputs, sliced, first, words);
        }

        sliced.Should().Equal(whole);
    }

    [Fact]
    public void TheStencilsCentreRowSliceCarriesAOneWordHaloClampedToTheRow()
    {
        Workload stencil = Workload.Create(WorkloadKind.Stencil, 200, seed: 1);

        stencil.InputWords(0, 64, 64).Should().Be((64, 64));
        stencil.InputWords(1, 64, 64).Should().Be((63, 66));
        stencil.InputWords(1, 0, 64).Should().Be((0, 65));
        stencil.InputWords(1, 448, 64).Should().Be((447, 65));
        stencil.InputWords(2, 448, 64).Should().Be((448, 64));
    }

    [Fact]
    public void TheStreamTriadComputesAPlusThreeB()
    {
        Workload stream = Workload.Create(WorkloadKind.Stream, 30, seed: 9);
        byte[] inputs = new byte[2 * 4096];
        byte[] output = new byte[4096];
        stream.InitialContents(stream.InputPage(2, 0, 10), inputs.AsSpan(0, 4096));
        stream.InitialContents(stream.InputPage(2, 1, 10), inputs.AsSpan(4096, 4096));

        stream.Compute(2, 10, inputs, output, 0, 512);

        ulong a = BitConverter.ToUInt64(inputs, 8);
        ulong b = BitConverter.ToUInt64(inputs, 4096 + 8);
        BitConverter.ToUInt64(output, 8).Should().Be(unchecked(a + (3 * b)));
    }

    [Fact]
    public void InitialContentsDifferBetweenPagesAndSeeds()
    {
        Workload first = Workload.Create(WorkloadKind.Stream, 30, seed: 1);
        Workload second = Workload.Create(WorkloadKind.Stream, 30, seed: 2);
        byte[] page0 = new byte[4096];
        byte[] page1 = new byte[4096];
        byte[] otherSeed = new byte[4096];

        first.InitialContents(0, page0);
        first.InitialContents(1, page1);
        second.InitialContents(0, otherSeed);

        page1.Should().NotEqual(page0);
        otherSeed.Should().NotEqual(page0);
    }

    [Theory]
    [InlineData(WorkloadKind.Stream, 3)]
    [InlineData(WorkloadKind.Random, 2)]
    [InlineData(WorkloadKind.Stencil, 2)]
    public void TheFittingExtentKeepsTheFootprintWithinTheGivenPages(WorkloadKind kind, int footprint)
    {
        Workload workload = Workload.Create(kind, 6000, seed: 1);

        workload.FootprintPagesPerItem.Should().Be(footprint);
        workload.ExtentFitting(900).Should().Be(900 / footprint);
        workload.ExtentFitting(1_000_000).Should().Be(workload.Items);
    }
}
