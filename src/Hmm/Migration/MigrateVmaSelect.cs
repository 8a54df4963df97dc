namespace Hmm;

/// <summary>Which source pages a migration collects (<c>enum migrate_vma_direction</c>, <c>MIGRATE_VMA_SELECT_*</c>).</summary>
[Flags]
public enum MigrateVmaSelect
{
    /// <summary>Nothing but holes in anonymous areas, which are always collected.</summary>
    None = 0,

    /// <summary><c>MIGRATE_VMA_SELECT_SYSTEM</c>: System RAM pages, and the zero page as "no page yet".</summary>
    System = 1 << 0,

    /// <summary><c>MIGRATE_VMA_SELECT_DEVICE_PRIVATE</c>: device-private pages of the pagemap owner given.</summary>
    DevicePrivate = 1 << 1,

    /// <summary><c>MIGRATE_VMA_SELECT_DEVICE_COHERENT</c>: device-coherent pages of the pagemap owner given.</summary>
    DeviceCoherent = 1 << 2,

    /// <summary><c>MIGRATE_VMA_SELECT_COMPOUND</c>: migrate large folios whole. Accepted; there are no large folios here.</summary>
    Compound = 1 << 3,
}
