namespace Hmm;

/// <summary>
/// Handles for the objects a page's <see cref="PageFrame.Mapping"/> names (an anon_vma or a file), so that the
/// struct page stays unmanaged: the frame holds a number, this table turns it back into the object. The memory
/// layer does not know the objects' types; the address-space layer does.
/// </summary>
/// <remarks>Concurrency model: a private lock guards registration; lookups read a published array without it.</remarks>
internal sealed class MappingTable
{
    private readonly Lock _lock = new();
    private readonly Stack<int> _freeHandles = new();
    private object?[] _objects = new object?[64];
    private int _next = 1;

    public ulong Register(object mapping)
    {
        lock (_lock)
        {
            int handle = _freeHandles.Count > 0 ? _freeHandles.Pop() : _next++;
            if (handle >= _objects.Length)
            {
                object?[] grown = new object?[_objects.Length * 2];
                _objects.CopyTo(grown, 0);
                Volatile.Write(ref _objects, grown);
            }

            Volatile.Write(ref _objects[handle], mapping);
            return (ulong)handle;
        }
    }

    public object? Find(ulong handle)
    {
        object?[] objects = Volatile.Read(ref _objects);
        return handle < (ulong)objects.Length ? Volatile.Read(ref objects[handle]) : null;
    }

    public void Unregister(ulong handle)
    {
        lock (_lock)
        {
            _objects[handle] = null;
            _freeHandles.Push((int)handle);
        }
    }
}
