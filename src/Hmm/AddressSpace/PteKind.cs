namespace Hmm;

/// <summary>What a page-table entry holds.</summary>
public enum PteKind
{
    /// <summary>Empty (<c>pte_none</c>): never faulted, or unmapped.</summary>
    None = -1,

    /// <summary>Maps a CPU-accessible frame.</summary>
    Present = 0,

    /// <summary>A device-private page (<c>is_device_private_entry</c>): a CPU access faults to <c>migrate_to_ram</c>.</summary>
    DevicePrivate = 1,

    /// <summary>A page being migrated (<c>is_migration_entry</c>): a CPU access waits for the migration to finish.</summary>
    Migration = 2,

    /// <summary>A page a device holds for atomic access (<c>is_device_exclusive_entry</c>): a CPU access revokes it.</summary>
    DeviceExclusive = 3,
}
