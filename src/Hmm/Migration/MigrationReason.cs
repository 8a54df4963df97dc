namespace Hmm;

/// <summary>Why a migration ran, as the <c>hmm.migration.reason</c> attribute of the migration instruments.</summary>
internal enum MigrationReason
{
    /// <summary>A driver's own <c>migrate_vma</c> (a device fault, a prefetch, a migrate command).</summary>
    Explicit = 0,

    /// <summary>A <c>migrate_vma</c> from <c>migrate_to_ram</c> (it names a fault page): the CPU touched a device page.</summary>
    CpuFault = 1,

    /// <summary><c>migrate_device_range</c> or <c>migrate_device_pfns</c>: a driver emptying device memory by PFN.</summary>
    Eviction = 2,

    /// <summary>A device-coherent page moved to System RAM so it can be pinned long-term.</summary>
    Pin = 3,
}
