namespace Hmm;

/// <summary>
/// A migration of a range of one area, owned by the caller (<c>struct migrate_vma</c>). Fill in <see cref="Vma"/>,
/// <see cref="Start"/>, <see cref="End"/>, <see cref="Src"/>, <see cref="Dst"/>, <see cref="Flags"/>,
/// <see cref="PgmapOwner"/> (and <see cref="FaultPage"/> inside <c>migrate_to_ram</c>), then call
/// <see cref="Migrate.VmaSetup"/>, allocate and copy, <see cref="Migrate.VmaPages"/> and <see cref="Migrate.VmaFinalize"/>,
/// all with the area's mmap lock held.
/// </summary>
/// <remarks>
/// A <c>ref struct</c> so that <see cref="Src"/> and <see cref="Dst"/> can be stack or pooled memory: a round of
/// migration allocates nothing. As in the kernel, the caller must not change <see cref="Src"/> after setup nor
/// <see cref="Dst"/> after <see cref="Migrate.VmaPages"/>.
/// </remarks>
public ref struct MigrateVma
{
    /// <summary>The area to migrate from (<c>vma</c>).</summary>
    public Vma? Vma { get; set; }

    /// <summary>The first address, page aligned (<c>start</c>).</summary>
    public ulong Start { get; set; }

    /// <summary>One past the last address, page aligned (<c>end</c>).</summary>
    public ulong End { get; set; }

    /// <summary>
    /// One <see cref="MigratePfn"/> entry per page of the range (<c>src</c>): written by setup (what was collected),
    /// narrowed by <see cref="Migrate.VmaPages"/> (what really migrates).
    /// </summary>
    public Span<ulong> Src { get; set; }

    /// <summary>One <see cref="MigratePfn"/> entry per page (<c>dst</c>): cleared by setup, filled by the driver with locked destination pages.</summary>
    public Span<ulong> Dst { get; set; }

    /// <summary>How many entries setup left marked <see cref="MigratePfn.Migrate"/>, holes included (<c>cpages</c>).</summary>
    public ulong CPages { get; internal set; }

    /// <summary>How many entries setup walked (<c>npages</c>): the range's page count.</summary>
    public ulong NPages { get; internal set; }

    /// <summary>
    /// The owner of the device pages to collect, compared with <see cref="DevPagemap.Owner"/> (<c>pgmap_owner</c>);
    /// also passed to interval notifiers as <see cref="MmuNotifierRange.Owner"/> so the initiating driver can skip
    /// invalidating its own mappings.
    /// </summary>
    public object? PgmapOwner { get; set; }

    /// <summary>Which pages to collect (<c>flags</c>).</summary>
    public MigrateVmaSelect Flags { get; set; }

    /// <summary>
    /// Inside <see cref="IDevPagemapOps.MigrateToRam"/>: the faulting page (<c>fault_page</c>), which the fault
    /// path holds locked and referenced; null elsewhere.
    /// </summary>
    public Pfn? FaultPage { get; set; }
}
