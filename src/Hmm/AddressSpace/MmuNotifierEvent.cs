namespace Hmm;

/// <summary>Why an address range is being invalidated (<c>enum mmu_notifier_event</c>).</summary>
public enum MmuNotifierEvent
{
    /// <summary><c>MMU_NOTIFY_UNMAP</c>: munmap, mremap moving the range, or the exit unmapping every area (after <see cref="Release"/>).</summary>
    Unmap = 0,

    /// <summary><c>MMU_NOTIFY_CLEAR</c>: page-table entries cleared for another reason (madvise, a page replaced, COW).</summary>
    Clear,

    /// <summary><c>MMU_NOTIFY_PROTECTION_VMA</c>: mprotect; the new VMA protection says what to do.</summary>
    ProtectionVma,

    /// <summary><c>MMU_NOTIFY_PROTECTION_PAGE</c>: a per-page protection change; inspect the entries.</summary>
    ProtectionPage,

    /// <summary><c>MMU_NOTIFY_SOFT_DIRTY</c>: soft-dirty tracking write-protected the range.</summary>
    SoftDirty,

    /// <summary><c>MMU_NOTIFY_RELEASE</c>: the address space is going away; an <see cref="Unmap"/> of the whole space follows.</summary>
    Release,

    /// <summary><c>MMU_NOTIFY_MIGRATE</c>: pages are migrating; <see cref="MmuNotifierRange.Owner"/> is the migrating pagemap owner.</summary>
    Migrate,

    /// <summary><c>MMU_NOTIFY_EXCLUSIVE</c>: an entry is becoming device-exclusive; <see cref="MmuNotifierRange.Owner"/> is the requester.</summary>
    Exclusive,
}
