using System.Buffers.Binary;

namespace Hmm.SimGpu;

/// <summary>
/// A GPU kernel as a deterministic access stream over output pages ("rows"): row i reads <see cref="ReadsPerItem"/>
/// input pages of the buffer and writes one output page computed from them, word by word. The executor splits each
/// row into sub-page work items (a word range each, see <see cref="InputWords"/>), so one row's items touch the
/// same pages, as neighbouring warps of a real GPU kernel do. Page numbers are relative to the buffer. The kernel
/// covers an extent (a prefix of its rows whose pages lie in a prefix of each array), so a phase can run it on a
/// part of the buffer that fits in device memory. Input pages hold a fixed function of the seed, so the CPU can
/// check an output page without reading the inputs back.
/// </summary>
internal abstract class Workload
{
    /// <summary>64-bit words per 4 KiB page.</summary>
    protected const int WordsPerPage = PageBytes / sizeof(ulong);

    private const int PageBytes = 4096;

    protected Workload(ulong seed) => Seed = seed;

    /// <summary>The seed the input values (and the random workload's picks) derive from.</summary>
    protected ulong Seed { get; }

    /// <summary>Input pages each row (and each of its work items) reads before it writes its output page.</summary>
    public abstract int ReadsPerItem { get; }

    /// <summary>Rows (output pages) of the whole kernel (its largest extent).</summary>
    public abstract long Items { get; }

    /// <summary>Distinct pages one row adds to the footprint (inputs and output), for sizing an extent that fits.</summary>
    public abstract int FootprintPagesPerItem { get; }

    /// <summary>The input pages: [0, <see cref="InputPages"/>) of the buffer, which the CPU initialises.</summary>
    public abstract long InputPages { get; }

    /// <summary>The buffer page of input <paramref name="read"/> of <paramref name="item"/> under <paramref name="extent"/>.</summary>
    public abstract long InputPage(long item, int read, long extent);

    /// <summary>The buffer page <paramref name="item"/> writes.</summary>
    public abstract long OutputPage(long item);

    /// <summary>The item whose output page is buffer page <paramref name="page"/>, or -1 if it is not an output page.</summary>
    public abstract long OutputItem(long page);

    /// <summary>
    /// Computes words [<paramref name="firstWord"/>, <paramref name="firstWord"/> + <paramref name="wordCount"/>) of
    /// the output page of <paramref name="item"/> from its input pages, laid one after the other in
    /// <paramref name="inputs"/> (only the words <see cref="InputWords"/> names need to hold data).
    /// </summary>
    public abstract void Compute(long item, long extent, ReadOnlySpan<byte> inputs, Span<byte> output, int firstWord, int wordCount);

    /// <summary>
    /// The words of input page <paramref name="read"/> that output words [<paramref name="firstWord"/>,
    /// <paramref name="firstWord"/> + <paramref name="wordCount"/>) depend on: by default the same words; a
    /// stencil's centre row adds its one-word halo on each side (clamped to the page).
    /// </summary>
    public virtual (int FirstWord, int WordCount) InputWords(int read, int firstWord, int wordCount) => (firstWord, wordCount);

    /// <summary>Creates the workload of <paramref name="kind"/> over a buffer of <paramref name="bufferPages"/> pages.</summary>
    public static Workload Create(WorkloadKind kind, long bufferPages, ulong seed) => kind switch
    {
        WorkloadKind.Stream => new StreamWorkload(bufferPages, seed),
        WorkloadKind.Random => new RandomWorkload(bufferPages, seed),
        _ => new StencilWorkload(bufferPages, seed),
    };

    /// <summary>The largest extent whose footprint is at most <paramref name="pages"/> (at least 1).</summary>
    public long ExtentFitting(long pages) => Math.Clamp(pages / FootprintPagesPerItem, 1, Items);

    /// <summary>Fills <paramref name="data"/> (one page) with the initial contents of input page <paramref name="page"/>.</summary>
    public void InitialContents(long page, Span<byte> data)
    {
        ulong first = (ulong)page * WordsPerPage;
        for (int word = 0; word < WordsPerPage; word++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(data.Slice(word * sizeof(ulong)), Mix(Seed ^ (first + (ulong)word)));
        }
    }

    /// <summary>Computes into <paramref name="output"/> what <paramref name="item"/> must have written, from the initial input contents.</summary>
    /// <param name="item">The item.</param>
    /// <param name="extent">The extent it ran under.</param>
    /// <param name="scratch">At least <see cref="ReadsPerItem"/> pages, overwritten.</param>
    /// <param name="output">One page.</param>
    public void Expected(long item, long extent, Span<byte> scratch, Span<byte> output)
    {
        for (int read = 0; read < ReadsPerItem; read++)
        {
            InitialContents(InputPage(item, read, extent), scratch.Slice(read * PageBytes, PageBytes));
        }

        Compute(item, extent, scratch.Slice(0, ReadsPerItem * PageBytes), output, 0, WordsPerPage);
    }

    /// <summary>SplitMix64's finaliser: a bijective, well-mixed function of the input.</summary>
    protected static ulong Mix(ulong value)
    {
        value += 0x9E3779B97F4A7C15UL;
        value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9UL;
        value = (value ^ (value >> 27)) * 0x94D049BB133111EBUL;
        return value ^ (value >> 31);
    }

    /// <summary>Word <paramref name="word"/> of page <paramref name="index"/> in <paramref name="pages"/>.</summary>
    protected static ulong Word(ReadOnlySpan<byte> pages, int index, int word) =>
        BinaryPrimitives.ReadUInt64LittleEndian(pages.Slice((index * WordsPerPage + word) * sizeof(ulong)));

    /// <summary>Stores <paramref name="value"/> as word <paramref name="word"/> of <paramref name="page"/>.</summary>
    protected static void SetWord(Span<byte> page, int word, ulong value) =>
        BinaryPrimitives.WriteUInt64LittleEndian(page.Slice(word * sizeof(ulong)), value);
}
