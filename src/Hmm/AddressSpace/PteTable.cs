using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// The last level of a page table: 512 entries covering 2 MiB of virtual addresses, with its own lock (the
/// kernel's split PTE lock, <c>pte_lockptr</c>).
/// </summary>
/// <remarks>Concurrency model: entries are read lock-free with <see cref="Read"/>; every change goes through
/// <see cref="SetUnsynchronized"/> with <see cref="Lock"/> held, which also keeps <see cref="Used"/> exact.</remarks>
internal sealed class PteTable(ulong baseAddress)
{
    private readonly ulong[] _entries = new ulong[PageTable.EntriesPerTable];

    /// <summary>The first virtual address this table covers.</summary>
    public ulong BaseAddress { get; } = baseAddress;

    /// <summary>The PTE lock: held to change any entry of this table.</summary>
    public Lock Lock { get; } = new();

    /// <summary>How many entries are not none. Changed under <see cref="Lock"/>.</summary>
    public int Used { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Pte Read(int index) => new(Volatile.Read(ref _entries[index]));

    /// <summary>Stores an entry. Caller holds <see cref="Lock"/>.</summary>
    public void SetUnsynchronized(int index, Pte pte)
    {
        ref ulong slot = ref _entries[index];
        Used += (pte.IsNone ? 0 : 1) - (slot == 0 ? 0 : 1);
        Volatile.Write(ref slot, pte.Raw);
    }
}
