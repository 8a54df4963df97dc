namespace Hmm;

/// <summary>
/// A pagemap lifetime change recorded by <see cref="TraceEventKind.PagemapLifetime"/>. Stored in the record's
/// flags; part of the file format.
/// </summary>
public enum TracePagemapChange : ushort
{
    /// <summary>Teardown began (<c>percpu_ref_kill</c>): no new references are taken.</summary>
    Kill = 1,

    /// <summary>The last reference went away: the pagemap is idle and teardown can finish.</summary>
    Idle = 2,

    /// <summary>The pagemap was removed (<c>memunmap_pages</c> finished).</summary>
    Removed = 3,
}
