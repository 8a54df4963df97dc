namespace Hmm.SimGpu;

/// <summary>A set of buffer pages, as a bitmap: the distinct pages the kernels touched.</summary>
internal sealed class PageSet
{
    private readonly ulong[] _bits;

    public PageSet(long pages)
    {
        Pages = pages;
        _bits = new ulong[(pages + 63) / 64];
    }

    /// <summary>Pages of the buffer the set is over.</summary>
    public long Pages { get; }

    /// <summary>Distinct pages added.</summary>
    public long Count { get; private set; }

    public void Add(long page)
    {
        ulong bit = 1UL << (int)(page & 63);
        if ((_bits[page >> 6] & bit) == 0)
        {
            _bits[page >> 6] |= bit;
            Count++;
        }
    }
}
