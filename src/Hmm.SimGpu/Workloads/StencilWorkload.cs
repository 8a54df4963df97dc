namespace Hmm.SimGpu;

/// <summary>
/// Five-point stencil over an input and an output grid of <c>n</c> rows, one page (512 words) per row: item y
/// reads input rows y-1, y and y+1 (clamped to the extent) and writes
/// out[y][x] = 4 in[y][x] - in[y-1][x] - in[y+1][x] - in[y][x-1] - in[y][x+1] (columns clamped to the row,
/// wrapping arithmetic). A work item computes a slice of columns of row y: it reads that slice of rows y-1 and y+1
/// and the slice plus one halo column on each side of row y, so the result does not depend on the slicing.
/// </summary>
internal sealed class StencilWorkload : Workload
{
    private readonly long _rows;

    public StencilWorkload(long bufferPages, ulong seed)
        : base(seed) => _rows = bufferPages / 2;

    public override int ReadsPerItem => 3;

    public override long Items => _rows;

    public override int FootprintPagesPerItem => 2;

    public override long InputPages => _rows;

    public override long InputPage(long item, int read, long extent) => Math.Clamp(item + read - 1, 0, extent - 1);

    public override long OutputPage(long item) => item + _rows;

    public override long OutputItem(long page) => page >= _rows && page < 2 * _rows ? page - _rows : -1;

    public override (int FirstWord, int WordCount) InputWords(int read, int firstWord, int wordCount)
    {
        if (read != 1)
        {
            return (firstWord, wordCount);
        }

        int first = Math.Max(firstWord - 1, 0);
        int end = Math.Min(firstWord + wordCount + 1, WordsPerPage);
        return (first, end - first);
    }

    public override void Compute(long item, long extent, ReadOnlySpan<byte> inputs, Span<byte> output, int firstWord, int wordCount)
    {
        for (int x = firstWord; x < firstWord + wordCount; x++)
        {
            ulong centre = Word(inputs, 1, x);
            ulong left = Word(inputs, 1, Math.Max(x - 1, 0));
            ulong right = Word(inputs, 1, Math.Min(x + 1, WordsPerPage - 1));
            SetWord(output, x, (4 * centre) - Word(inputs, 0, x) - Word(inputs, 2, x) - left - right);
        }
    }
}
