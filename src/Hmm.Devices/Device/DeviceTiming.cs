namespace Hmm.Devices;

/// <summary>
/// The device's cost parameters that a driver needs to charge its own host-side work, in virtual nanoseconds.
/// The device charges copies, accesses, replays and TLB invalidations itself.
/// </summary>
/// <param name="FarFaultLatency">Servicing one fault batch end to end: interrupt, fetch, host handling, replay (UVMSmart: about 45 µs).</param>
/// <param name="CpuFaultLatency">A CPU page fault on a device page, before its copy.</param>
/// <param name="TlbInvalidateLatency">One device TLB invalidation.</param>
public readonly record struct DeviceTiming(long FarFaultLatency, long CpuFaultLatency, long TlbInvalidateLatency);
