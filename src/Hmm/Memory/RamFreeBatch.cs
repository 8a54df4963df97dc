namespace Hmm;

/// <summary>
/// RAM pages freed by <see cref="PhysicalMemory.PutPageBatched"/>, handed to the allocator together
/// when the caller's buffer fills and at <see cref="Flush"/>: one allocator lock round trip per batch instead of one per
/// page. The caller flushes in a <c>finally</c>, so no freed page is ever lost to an exception.
/// </summary>
internal ref struct RamFreeBatch
{
    private readonly PhysicalMemory _memory;
    private readonly Span<ulong> _buffer;
    private int _count;

    public RamFreeBatch(PhysicalMemory memory, Span<ulong> buffer)
    {
        _memory = memory;
        _buffer = buffer;
    }

    public void Add(Pfn pfn)
    {
        if (_count == _buffer.Length)
        {
            Flush();
        }

        _buffer[_count++] = pfn.Value;
    }

    public void Flush()
    {
        if (_count > 0)
        {
            _memory.ReturnRamPages(_buffer[.._count]);
            _count = 0;
        }
    }
}
