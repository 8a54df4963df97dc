using System.Globalization;
using System.Text;

namespace Hmm;

/// <summary>
/// A blocking device unbind ran out of time because device pages are still referenced. It names each page and
/// its reference count: the diagnostic a hung <c>memunmap_pages</c> never gives. The teardown itself keeps going
/// and completes after the last put; <see cref="ManagedDevice.UnbindAsync"/> still observes it.
/// </summary>
public sealed class DeviceTeardownTimeoutException : HmmException
{
    private const int PagesInMessage = 16;

    /// <summary>Creates the exception.</summary>
    /// <param name="device">The device being unbound.</param>
    /// <param name="timeout">How long the caller waited.</param>
    /// <param name="referencedPages">The pages still referenced.</param>
    public DeviceTeardownTimeoutException(string device, TimeSpan timeout, IReadOnlyList<ReferencedPage> referencedPages)
        : base(Errno.ETIMEDOUT, Describe(device, timeout, referencedPages))
    {
        ReferencedPages = referencedPages;
    }

    /// <summary>The pages still referenced when the wait ran out.</summary>
    public IReadOnlyList<ReferencedPage> ReferencedPages { get; }

    private static string Describe(string device, TimeSpan timeout, IReadOnlyList<ReferencedPage> pages)
    {
        ArgumentNullException.ThrowIfNull(pages);
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

        return text.Append('.').ToString();
    }
}
