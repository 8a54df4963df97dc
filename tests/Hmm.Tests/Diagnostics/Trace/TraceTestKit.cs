using System.IO.Pipelines;

namespace Hmm.Tests.Diagnostics.Trace;

/// <summary>Builds small traces in memory and reads them back for the trace tests.</summary>
internal static class TraceTestKit
{
    /// <summary>One event of every kind, with distinct payloads.</summary>
    public static TraceEvent[] OneOfEachKind() =>
    [
        TraceEvent.CpuFault(0x7f00_1000, FaultFlags.Write, VmFaultResult.None, 100),
        TraceEvent.DeviceFault(1, 0x7f00_2000, TraceDeviceAccess.Atomic, 200),
        TraceEvent.FaultBatch(1, 7, 32, 5, 300, 900),
        TraceEvent.RangeFault(1, 0x7f00_0000, 16, 2, Errno.EFAULT, 400),
        TraceEvent.Invalidate(0x7f00_0000, 0x7f01_0000, MmuNotifierEvent.Migrate, 3, 500),
        TraceEvent.MigrateSetup(1, TraceDirection.HostToDevice, MigrateVmaSelect.System, 0x7f00_0000, 16, 14, 600),
        TraceEvent.MigratePages(1, TraceDirection.HostToDevice, 0x7f00_0000, 16, 13, 700),
        TraceEvent.MigrateFinalize(1, TraceDirection.HostToDevice, 0x7f00_0000, 13, 1, 800),
        TraceEvent.Copy(1, 2, TraceDirection.DeviceToHost, 65536, 1000, 1600),
        TraceEvent.Evict(1, 0x10_0000, 512, 1700),
        TraceEvent.TlbInvalidate(1, 0x7f00_0000, 0x7f00_4000, 1800),
        TraceEvent.DeviceAlloc(1, 0x10_0200, 16, 528, 1900),
        TraceEvent.DeviceFree(1, 0x10_0200, 16, 512, 2000),
        TraceEvent.PagemapLifetime(1, 42, TracePagemapChange.Idle, 0, 2100),
        TraceEvent.RunConfiguration(3, 96UL << 20),
        TraceEvent.Phase(2, 4096, 2200),
        TraceEvent.KernelLaunch(1, 2048, 4096, 4096, 2300),
        TraceEvent.DeviceAccess(1, 511, 0x7f00_3200, 512, TraceDeviceAccess.Write, true, 32_775, 2400),
        TraceEvent.CpuAccess(0x7f00_4000, 4096, true, 2500),
    ];

    /// <summary>Writes the events through a <see cref="TraceWriter"/> and returns the complete file.</summary>
    public static byte[] WriteTrace(IEnumerable<TraceEvent> events)
    {
        using var stream = new MemoryStream();
        using (var writer = TraceWriter.Create(stream, leaveOpen: true))
        {
            foreach (TraceEvent traceEvent in events)
            {
                writer.Write(traceEvent);
            }
        }

        return stream.ToArray();
    }

    /// <summary>Reads every record of a trace file held in memory.</summary>
    public static async Task<List<TraceEvent>> ReadAllAsync(byte[] file, int bytesPerRead = int.MaxValue)
    {
        var events = new List<TraceEvent>();
        await using var reader = new TraceReader(PipeReader.Create(new TrickleStream(file, bytesPerRead)));
        await foreach (TraceEvent traceEvent in reader.ReadAllAsync())
        {
            events.Add(traceEvent);
        }

        return events;
    }

    /// <summary>The exception reading the whole of an invalid trace file throws, or null if it reads cleanly.</summary>
    public static async Task<TraceFormatException?> ReadFailureAsync(byte[] file)
    {
        try
        {
            await ReadAllAsync(file);
            return null;
        }
        catch (TraceFormatException e)
        {
            return e;
        }
    }

    /// <summary>A read-only stream over a byte array that returns at most <c>bytesPerRead</c> bytes per read, to split records across reads.</summary>
    private sealed class TrickleStream(byte[] data, int bytesPerRead) : MemoryStream(data, writable: false)
    {
        public override int Read(byte[] buffer, int offset, int count) => base.Read(buffer, offset, Math.Min(count, bytesPerRead));

        public override int Read(Span<byte> buffer) => base.Read(buffer[..Math.Min(buffer.Length, bytesPerRead)]);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(buffer.Length, bytesPerRead)], cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            base.ReadAsync(buffer, offset, Math.Min(count, bytesPerRead), cancellationToken);
    }
}
