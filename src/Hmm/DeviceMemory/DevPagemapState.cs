namespace Hmm;

/// <summary>Where a pagemap is in its life.</summary>
public enum DevPagemapState
{
    /// <summary>Registered: lookups succeed and device pages can be initialised.</summary>
    Live,

    /// <summary>Killed: no new references; teardown waits for the outstanding ones.</summary>
    Dying,

    /// <summary>Torn down: its struct pages and lookup entries are gone.</summary>
    Removed,
}
