namespace Hmm;

/// <summary>
/// The areas of one address space, ordered and non-overlapping (the kernel keeps them in a maple tree). Lookup
/// is a binary search, O(log n); insert and remove shift the array, which for the few hundred areas a process
/// has is cheaper than a tree.
/// </summary>
/// <remarks>Concurrency model: changed only with the mmap lock held for writing; read with it held for reading.</remarks>
internal sealed class VmaTree
{
    private readonly List<Vma> _vmas = [];

    public int Count => _vmas.Count;

    public Vma this[int index] => _vmas[index];

    /// <summary>The area containing <paramref name="address"/>, or null (<c>vma_lookup</c>).</summary>
    public Vma? Find(ulong address)
    {
        int index = FirstEndingAfter(address);
        return index < _vmas.Count && _vmas[index].Start <= address ? _vmas[index] : null;
    }

    /// <summary>The index of the first area whose end lies above <paramref name="address"/> (<c>find_vma</c>), or Count.</summary>
    public int FirstEndingAfter(ulong address)
    {
        int low = 0;
        int high = _vmas.Count;
        while (low < high)
        {
            int middle = (low + high) >>> 1;
            if (_vmas[middle].End <= address)
            {
                low = middle + 1;
            }
            else
            {
                high = middle;
            }
        }

        return low;
    }

    /// <summary>Whether any area overlaps <c>[start, end)</c>.</summary>
    public bool Overlaps(ulong start, ulong end)
    {
        int index = FirstEndingAfter(start);
        return index < _vmas.Count && _vmas[index].Start < end;
    }

    /// <summary>Whether <c>[start, end)</c> is entirely covered by areas, without holes.</summary>
    public bool Covers(ulong start, ulong end)
    {
        ulong next = start;
        for (int index = FirstEndingAfter(start); index < _vmas.Count && next < end; index++)
        {
            if (_vmas[index].Start > next)
            {
                return false;
            }

            next = _vmas[index].End;
        }

        return next >= end;
    }

    public void Insert(Vma vma)
    {
        int index = FirstEndingAfter(vma.Start);
        _vmas.Insert(index, vma);
    }

    public void Remove(Vma vma) => _vmas.Remove(vma);

    /// <summary>The areas overlapping <c>[start, end)</c>, in address order (a snapshot).</summary>
    public List<Vma> Overlapping(ulong start, ulong end)
    {
        var result = new List<Vma>();
        for (int index = FirstEndingAfter(start); index < _vmas.Count && _vmas[index].Start < end; index++)
        {
            result.Add(_vmas[index]);
        }

        return result;
    }

    /// <summary>All areas in address order (a snapshot).</summary>
    public Vma[] Snapshot() => [.. _vmas];
}
