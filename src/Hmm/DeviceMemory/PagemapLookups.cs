namespace Hmm;

/// <summary>
/// Lifetime references on a pagemap that no referenced device page accounts for, as reported by a teardown that
/// is waiting for them: lookups (<see cref="DevPagemap.Get"/>) whose handle was never disposed.
/// </summary>
/// <param name="PagemapId">The pagemap.</param>
/// <param name="PagemapName">That pagemap's name.</param>
/// <param name="Count">How many such references it holds when sampled.</param>
public readonly record struct PagemapLookups(int PagemapId, string PagemapName, long Count);
