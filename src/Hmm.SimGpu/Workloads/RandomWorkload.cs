namespace Hmm.SimGpu;

/// <summary>
/// Uniform random gather over an input and an output array of <c>n</c> pages each: row i reads the input page
/// picked for it uniformly from the extent (a hash of the seed and i, so any row can be replayed alone) and
/// writes out[i] = in[pick] * K + i, word by word. The pick is per row (per output page), not per work item: the
/// work items of a row read the same slice of the picked page as they write of theirs, so a gather moves whole
/// pages (the granularity the driver migrates) and the row's items fault on the same input page together.
/// </summary>
internal sealed class RandomWorkload : Workload
{
    private const ulong Multiplier = 0x9E3779B97F4A7C15UL;
    private readonly long _arrayPages;

    public RandomWorkload(long bufferPages, ulong seed)
        : base(seed) => _arrayPages = bufferPages / 2;

    public override int ReadsPerItem => 1;

    public override long Items => _arrayPages;

    public override int FootprintPagesPerItem => 2;

    public override long InputPages => _arrayPages;

    public override long InputPage(long item, int read, long extent) =>
        (long)(Mix(Mix(Seed) ^ (ulong)item) % (ulong)extent);

    public override long OutputPage(long item) => item + _arrayPages;

    public override long OutputItem(long page) => page >= _arrayPages && page < 2 * _arrayPages ? page - _arrayPages : -1;

    public override void Compute(long item, long extent, ReadOnlySpan<byte> inputs, Span<byte> output, int firstWord, int wordCount)
    {
        for (int word = firstWord; word < firstWord + wordCount; word++)
        {
            SetWord(output, word, (Word(inputs, 0, word) * Multiplier) + (ulong)item);
        }
    }
}
