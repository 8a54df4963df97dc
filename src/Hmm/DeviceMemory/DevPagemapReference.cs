using System.Diagnostics.CodeAnalysis;

namespace Hmm;

/// <summary>
/// A lifetime reference on a device pagemap taken by <see cref="DevPagemap.Get"/> (<c>get_dev_pagemap</c>);
/// <see cref="Dispose"/> puts it (<c>put_dev_pagemap</c>). Use it with <c>using</c> so the put cannot be
/// missed. A value type: taking and dropping one allocates nothing.
/// </summary>
/// <remarks>
/// <para>One <see cref="DevPagemap.Get"/>, one <see cref="Dispose"/>. The handle is a plain value, so a second
/// <see cref="Dispose"/> (of the same variable or of a copy) is a second put, exactly as a second
/// <c>put_dev_pagemap</c> is in the kernel: while other references are out it cannot be told from a legitimate
/// put; when it would drop the pagemap's initial reference or go below zero it is a
/// <see cref="KernelBugException"/> and the count is unchanged. An empty handle (<see cref="HasValue"/> false)
/// holds nothing, and disposing it does nothing.</para>
/// </remarks>
[SuppressMessage("Performance", "CA1815:Override equals and operator equals on value types", Justification = "A handle is disposed, not compared.")]
public readonly struct DevPagemapReference : IDisposable
{
    internal DevPagemapReference(DevPagemap pagemap) => Pagemap = pagemap;

    /// <summary>The live pagemap this handle holds a reference on, or null when the lookup found none.</summary>
    public DevPagemap? Pagemap { get; }

    /// <summary>Whether the lookup found a live pagemap and this handle holds a reference on it.</summary>
    [MemberNotNullWhen(true, nameof(Pagemap))]
    public bool HasValue => Pagemap is not null;

    /// <summary>Puts the reference (<c>put_dev_pagemap</c>); nothing for an empty handle.</summary>
    /// <exception cref="KernelBugException">More puts than gets (see the remarks); the count is unchanged.</exception>
    public void Dispose() => Pagemap?.Ref.Put();
}
