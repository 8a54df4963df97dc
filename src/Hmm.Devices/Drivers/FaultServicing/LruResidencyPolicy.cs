namespace Hmm.Drivers;

/// <summary>
/// The default <see cref="IResidencyPolicy"/>: migrate exactly the faulted pages on first touch, and evict the least
/// recently used block.
/// </summary>
/// <remarks>
/// <para>Recency is updated when device pages are allocated for a block, not when the device accesses it: the device
/// does not report accesses to pages it has mapped, which is also why NVIDIA UVM's root-chunk list is in allocation
/// order (<c>uvm_pmm_gpu.c</c>: the position is refreshed on allocation). A block whose eviction left pages behind
/// moves to the most recent end so the next victim is another block.</para>
/// <para>An intrusive doubly linked list over arrays indexed by block id: every decision and notification is O(1),
/// and nothing allocates once the arrays cover the ids in use.</para>
/// <para>Concurrency model: not thread-safe; the driver calls it under its metadata lock (see <see cref="IResidencyPolicy"/>).</para>
/// </remarks>
public sealed class LruResidencyPolicy : IResidencyPolicy
{
    private const int None = -1;
    private int[] _prev = [];
    private int[] _next = [];
    private bool[] _linked = [];
    private int _head = None;   // least recently used
    private int _tail = None;   // most recently used
    private int _count;

    /// <summary>How many blocks hold device pages.</summary>
    public int Count => _count;

    /// <summary>Selects the faulted pages that are not resident yet (migration on first touch).</summary>
    /// <param name="block">The block's id.</param>
    /// <param name="address">The block's first virtual address.</param>
    /// <param name="faulted">The pages that faulted.</param>
    /// <param name="resident">The pages already in device memory.</param>
    /// <param name="migrate">Receives <paramref name="faulted"/> without <paramref name="resident"/>.</param>
    public void SelectPagesToMigrate(int block, ulong address, ReadOnlySpan<ulong> faulted, ReadOnlySpan<ulong> resident, Span<ulong> migrate)
    {
        for (int i = 0; i < migrate.Length; i++)
        {
            migrate[i] = faulted[i] & ~resident[i];
        }
    }

    /// <summary>The least recently populated block other than <paramref name="busyBlock"/>.</summary>
    /// <param name="busyBlock">The block being serviced.</param>
    /// <returns>The victim, or -1 when no other block holds device pages.</returns>
    public int SelectVictim(int busyBlock)
    {
        int victim = _head;
        if (victim == busyBlock)
        {
            victim = _next[victim];
        }

        return victim;
    }

    /// <summary>Moves the block to the most recently used end (adding it if new).</summary>
    /// <param name="block">The block's id.</param>
    /// <exception cref="HmmException">EINVAL: a negative id; nothing changes.</exception>
    public void BlockPopulated(int block) => MoveToTail(block);

    /// <summary>Moves the block to the most recently used end, so the next victim is another block.</summary>
    /// <param name="block">The block's id.</param>
    /// <exception cref="HmmException">EINVAL: a negative id; nothing changes.</exception>
    public void BlockEvictionIncomplete(int block) => MoveToTail(block);

    /// <summary>Removes the block from the list.</summary>
    /// <param name="block">The block's id.</param>
    public void BlockEmptied(int block)
    {
        if ((uint)block < (uint)_linked.Length && _linked[block])
        {
            Unlink(block);
        }
    }

    private void MoveToTail(int block)
    {
        if (block < 0)
        {
            throw new HmmException(Errno.EINVAL, $"Block id {block} is negative.");
        }

        if (block >= _linked.Length)
        {
            int size = Math.Max(block + 1, Math.Max(64, _linked.Length * 2));
            Array.Resize(ref _prev, size);
            Array.Resize(ref _next, size);
            Array.Resize(ref _linked, size);
        }

        if (_linked[block])
        {
            if (_tail == block)
            {
                return;
            }

            Unlink(block);
        }

        _prev[block] = _tail;
        _next[block] = None;
        if (_tail == None)
        {
            _head = block;
        }
        else
        {
            _next[_tail] = block;
        }

        _tail = block;
        _linked[block] = true;
        _count++;
    }

    private void Unlink(int block)
    {
        int prev = _prev[block];
        int next = _next[block];
        if (prev == None)
        {
            _head = next;
        }
        else
        {
            _next[prev] = next;
        }

        if (next == None)
        {
            _tail = prev;
        }
        else
        {
            _prev[next] = prev;
        }

        _linked[block] = false;
        _count--;
    }
}
