namespace Hmm.Devices;

/// <summary>
/// The device's copy engine (DMA): copies page frames System RAM to device, device to System RAM, and device to
/// device (its own or another device's memory), in batches. The bytes move when the call returns; the returned
/// completion says when the copy finished on the virtual clock, which a driver waits for with
/// <see cref="IVirtualClock.AdvanceTo"/>. Consecutive source and destination frames form one transfer, and
/// larger transfers run at higher bandwidth.
/// </summary>
/// <remarks>
/// <para>Error model: a length mismatch, a frame that is not present, or a destination that is read-only (the
/// zero page) gives <see cref="HmmException"/> EINVAL and copies nothing. A failed transfer (an injected fault,
/// as a DMA error would be) is returned as EIO, with nothing copied.</para>
/// <para>Concurrency model: thread-safe; copies are queued on the engine in call order.</para>
/// </remarks>
public interface ICopyEngine
{
    /// <summary>Copies <paramref name="source"/>[i] to <paramref name="destination"/>[i] for every i.</summary>
    /// <param name="source">Frames to read.</param>
    /// <param name="destination">Frames to write, the same length.</param>
    /// <param name="completion">When the batch ran on the virtual clock, and how many bytes it moved.</param>
    /// <returns><see cref="Errno.None"/>, or <see cref="Errno.EIO"/> when the transfer failed and nothing was copied.</returns>
    /// <exception cref="HmmException">EINVAL, see the type's remarks.</exception>
    Errno Copy(ReadOnlySpan<Pfn> source, ReadOnlySpan<Pfn> destination, out CopyCompletion completion);
}
