using System.Globalization;
using System.Text;

namespace Hmm;

/// <summary>
/// A blocking device unbind ran out of time because device pages are still referenced or lookups
/// (<see cref="DevPagemap.Get"/> handles not yet disposed) still hold a pagemap. It names each page and its reference
/// count, and each pagemap's outstanding lookups: the diagnostic a hung <c>memunmap_pages</c> never gives. The teardown itself keeps going
/// and completes after the last put; <see cref="ManagedDevice.UnbindAsync"/> still observes it.
/// </summary>
public sealed class DeviceTeardownTimeoutException : HmmException
{
    private const int PagesInMessage = 16;

    /// <summary>Creates the exception. Only the unbind that timed out creates one.</summary>
    /// <param name="device">The device being unbound.</param>
    /// <param name="timeout">How long the caller waited.</param>
    /// <param name="referencedPages">The pages still referenced.</param>
    /// <param name="outstandingLookups">Per pagemap, the lifetime references no page accounts for; only pagemaps with some.</param>
    internal DeviceTeardownTimeoutException(string device, TimeSpan timeout, IReadOnlyList<ReferencedPage> referencedPages, IReadOnlyList<PagemapLookups> outstandingLookups)
        : base(Errno.ETIMEDOUT, Describe(device, timeout, referencedPages, outstandingLookups))
    {
        ReferencedPages = referencedPages;
        OutstandingLookups = outstandingLookups;
    }

    /// <summary>The pages still referenced when the wait ran out.</summary>
    public IReadOnlyList<ReferencedPage> ReferencedPages { get; }

    /// <summary>
    /// Per pagemap, the lifetime references that no referenced page accounts for when the wait ran out: lookups
    /// (<see cref="DevPagemap.Get"/>) not yet disposed. Empty when only pages hold the teardown.
    /// </summary>
    public IReadOnlyList<PagemapLookups> OutstandingLookups { get; }

    private static string Describe(string device, TimeSpan timeout, IReadOnlyList<ReferencedPage> pages, IReadOnlyList<PagemapLookups> lookups)
    {
        ArgumentNullException.ThrowIfNull(pages);
        ArgumentNullException.ThrowIfNull(lookups);
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"Unbinding device '{device}' timed out after {timeout.TotalMilliseconds:0} ms: {pages.Count} device page(s) still referenced");
        for (int i = 0; i < pages.Count && i < PagesInMessage; i++)
        {
            ReferencedPage page = pages[i];
            text.Append(i == 0 ? ": " : ", ");
            text.Append(CultureInfo.InvariantCulture, $"{page.Pfn} (refcount {page.RefCount}, pagemap {page.PagemapId} '{page.PagemapName}')");
        }

        if (pages.Count > PagesInMessage)
        {
            text.Append(CultureInfo.InvariantCulture, $", and {pages.Count - PagesInMessage} more");
        }

        long lookupTotal = 0;
        foreach (PagemapLookups entry in lookups)
        {
            lookupTotal += entry.Count;
        }

        text.Append(CultureInfo.InvariantCulture, $"; {lookupTotal} pagemap lookup(s) not put");
        for (int i = 0; i < lookups.Count; i++)
        {
            PagemapLookups entry = lookups[i];
            text.Append(i == 0 ? ": " : ", ");
            text.Append(CultureInfo.InvariantCulture, $"pagemap {entry.PagemapId} '{entry.PagemapName}' holds {entry.Count}");
        }

        return text.Append('.').ToString();
    }
}
