namespace Hmm.SimGpu;

/// <summary>
/// STREAM triad over three arrays of <c>n</c> pages each (a, b, c, one after the other; pages past 3n are never
/// touched): row i reads a[i] and b[i] and writes c[i] = a[i] + 3 b[i], word by word, wrapping; each work item
/// does that for its slice of the row.
/// </summary>
internal sealed class StreamWorkload : Workload
{
    private readonly long _arrayPages;

    public StreamWorkload(long bufferPages, ulong seed)
        : base(seed) => _arrayPages = bufferPages / 3;

    public override int ReadsPerItem => 2;

    public override long Items => _arrayPages;

    public override int FootprintPagesPerItem => 3;

    public override long InputPages => 2 * _arrayPages;

    public override long InputPage(long item, int read, long extent) => item + (read * _arrayPages);

    public override long OutputPage(long item) => item + (2 * _arrayPages);

    public override long OutputItem(long page) => page >= 2 * _arrayPages && page < 3 * _arrayPages ? page - (2 * _arrayPages) : -1;

    public override void Compute(long item, long extent, ReadOnlySpan<byte> inputs, Span<byte> output, int firstWord, int wordCount)
    {
        for (int word = firstWord; word < firstWord + wordCount; word++)
        {
            SetWord(output, word, Word(inputs, 0, word) + (3 * Word(inputs, 1, word)));
        }
    }
}
