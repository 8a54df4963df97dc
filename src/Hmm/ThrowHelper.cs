using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>Throw sites kept out of line so that the methods calling them stay small enough to inline.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void ThrowHmm(Errno error, string message) => throw CreateHmm(error, message);

    [DoesNotReturn]
    public static void ThrowBug(string message) => throw CreateBug(message);

    [DoesNotReturn]
    public static void ThrowNotPresent(Pfn pfn) => throw CreateHmm(Errno.EFAULT, $"{pfn} has no struct page (not RAM and not in a registered device range).");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static HmmException CreateHmm(Errno error, string message) => new(error, message);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static KernelBugException CreateBug(string message) => new(message);
}
