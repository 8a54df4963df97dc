namespace Hmm.SimGpu.Tests.Cli.Tracing;

/// <summary>
/// A small trace with every kind, two devices and two CPU threads (events are built on two threads, since an
/// event takes the managed id of the thread that builds it), whose statistics are known by construction.
/// </summary>
internal static class SyntheticTrace
{
    public const ulong PagesAllocated = 512;

    /// <summary>Builds the events of device 0 on one thread and of device 1 on another, and returns them in file order with both thread ids.</summary>
    public static (TraceEvent[] Events, int ThreadA, int ThreadB) Build()
    {
        TraceEvent[]? a = null, b = null;
        int threadA = 0, threadB = 0;
        var first = new Thread(() => { threadA = Environment.CurrentManagedThreadId; a = DeviceEvents(0); });
        var second = new Thread(() => { threadB = Environment.CurrentManagedThreadId; b = DeviceEvents(1); });
        first.Start();
        first.Join();
        second.Start();
        second.Join();
        return ([.. a!, .. b!], threadA, threadB);
    }

    public static async Task WriteAsync(string path, IEnumerable<TraceEvent> events)
    {
        await using TraceWriter writer = TraceWriter.Create(File.Create(path));
        foreach (TraceEvent e in events)
        {
            writer.Write(e);
        }
    }

    // Per device: faults at 1024, 1536, 1600 serviced by batch 1 [2000, 4096] (latencies 3072, 2560, 2496), a
    // fault at 5120 serviced by batch 2 [6000, 9216] (latency 4096). Batch 1's migration is recorded before the
    // batch, batch 2's after it; both fall in their batch's window.
    private static TraceEvent[] DeviceEvents(ushort d) =>
    [
        TraceEvent.DeviceAlloc(d, 0, PagesAllocated, PagesAllocated, 0),
        TraceEvent.DeviceFault(d, 0x10000, TraceDeviceAccess.Read, 1024),
        TraceEvent.DeviceFault(d, 0x11000, TraceDeviceAccess.Write, 1536),
        TraceEvent.DeviceFault(d, 0x11000, TraceDeviceAccess.Write, 1600),
        TraceEvent.MigrateSetup(d, TraceDirection.HostToDevice, MigrateVmaSelect.System, 0x10000, 2, 2, 2500),
        TraceEvent.MigratePages(d, TraceDirection.HostToDevice, 0x10000, 2, 2, 2600),
        TraceEvent.Copy(d, 0, TraceDirection.HostToDevice, 2 * 4096, 2700, 3200),
        TraceEvent.MigrateFinalize(d, TraceDirection.HostToDevice, 0x10000, 2, 0, 3300),
        TraceEvent.FaultBatch(d, 1, 3, 1, 2000, 4096),
        TraceEvent.DeviceFault(d, 0x20000, TraceDeviceAccess.Atomic, 5120),
        TraceEvent.FaultBatch(d, 2, 1, 0, 6000, 9216),
        TraceEvent.MigrateSetup(d, TraceDirection.HostToDevice, MigrateVmaSelect.System, 0x20000, 1, 1, 7000),
        TraceEvent.MigrateFinalize(d, TraceDirection.HostToDevice, 0x20000, 1, 0, 7500),
        TraceEvent.Evict(d, 0, 1, 8000),
        TraceEvent.MigrateSetup(d, TraceDirection.DeviceToHost, MigrateVmaSelect.DevicePrivate, 0x10000, 1, 1, 8050),
        TraceEvent.Copy(d, 1, TraceDirection.DeviceToHost, 4096, 8060, 8090),
        TraceEvent.MigrateFinalize(d, TraceDirection.DeviceToHost, 0x10000, 1, 0, 8100),
        TraceEvent.TlbInvalidate(d, 0x10000, 0x11000, 8200),
        TraceEvent.DeviceFree(d, 0, 1, PagesAllocated - 1, 8300),
        TraceEvent.CpuFault(0x30000, FaultFlags.Write | FaultFlags.Remote, VmFaultResult.None, 9500),
        TraceEvent.RangeFault(d, 0x30000, 4, 1, Errno.None, 9600),
        TraceEvent.Invalidate(0x30000, 0x34000, MmuNotifierEvent.Clear, 2, 9700),
        TraceEvent.PagemapLifetime(d, 7, TracePagemapChange.Kill, 3, 10000),
    ];
}
