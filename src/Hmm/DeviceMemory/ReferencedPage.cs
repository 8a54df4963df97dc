
namespace Hmm;

/// <summary>A device page that still holds references, as reported by a teardown that is waiting for it.</summary>
/// <param name="Pfn">The page.</param>
/// <param name="RefCount">Its reference count when sampled.</param>
/// <param name="PagemapId">The pagemap it belongs to.</param>
/// <param name="PagemapName">That pagemap's name.</param>
public readonly record struct ReferencedPage(Pfn Pfn, int RefCount, int PagemapId, string PagemapName);
