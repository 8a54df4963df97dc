namespace Hmm;

/// <summary>
/// A broken kernel invariant: what the kernel would stop on with <c>BUG_ON</c> or warn about with <c>WARN_ON</c>
/// (a page reference put below zero, unlocking a page that is not locked, freeing a page that is still mapped,
/// a reserved page reaching the allocator). It reports a defect in the calling driver, not a runtime condition
/// to handle, so it deliberately is not an <see cref="HmmException"/> and carries no errno: a driver's
/// <c>catch (HmmException e)</c> that turns errors into return codes cannot swallow its own bug.
/// </summary>
/// <remarks>The operation that detects the broken invariant undoes its own partial effect before throwing, so
/// the simulated memory stays consistent and the test that provoked it can go on inspecting it.</remarks>
public sealed class KernelBugException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What invariant was broken, naming the page or object.</param>
    public KernelBugException(string message)
        : base(message)
    {
    }
}
