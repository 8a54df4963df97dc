using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// The simulated GPU's copy engine (<see cref="ICopyEngine"/>): moves the bytes at once (unless the machine is
/// metadata-only) and schedules the batch on the engine's timeline: it starts when both the clock and the engine
/// are there, and ends after the sum of its transfers' times on the cost model.
/// </summary>
/// <remarks>
/// Concurrency model: <c>_lock</c> guards the engine's timeline, its copy counters and its transfer-time memo, and
/// is held while a batch's bytes move, so batches run one at a time in call order. Nothing that takes a lock is
/// called under it.
/// </remarks>
internal sealed class SimCopyEngine : ICopyEngine
{
    private readonly SimulatedGpu _gpu;
    // Guards _busyUntil and is held while a batch's bytes move, so batches run one at a time in call order.
    // A leaf: only page data is touched under it.
    private readonly Lock _lock = new();
    private long _busyUntil;

    // The last transfer size on the PCIe curve and its time: most transfers are one size (a page for a CPU fault's
    // migrate_to_ram), and the curve's arctangent showed in the profile.
    private long _memoBytes = -1;
    private long _memoTime;

    internal SimCopyEngine(SimulatedGpu gpu) => _gpu = gpu;

    /// <summary>What a pair of frames is, for the statistics and the cost of its transfer.</summary>
    private enum Route
    {
        HostToDevice,
        DeviceToHost,
        WithinDevice,
        DeviceToDevice,
        HostToHost,
    }

    private const int RouteCount = (int)Route.HostToHost + 1;

    /// <inheritdoc/>
    public Errno Copy(ReadOnlySpan<Pfn> source, ReadOnlySpan<Pfn> destination, out CopyCompletion completion)
    {
        PhysicalMemory memory = _gpu.Memory;
        if (source.Length != destination.Length)
        {
            throw new HmmException(Errno.EINVAL, $"Copy of {source.Length} source frames to {destination.Length} destination frames.");
        }

        for (int i = 0; i < source.Length; i++)
        {
            if (!memory.IsPresent(source[i]) || !memory.IsPresent(destination[i]))
            {
                throw new HmmException(Errno.EINVAL, $"Copy {source[i]} -> {destination[i]}: a frame is not present.");
            }

            if ((memory.Page(destination[i]).Flags & PageFlags.Reserved) != 0)
            {
                throw new HmmException(Errno.EINVAL, $"Copy to {destination[i]}: a reserved page is read-only.");
            }
        }

        if (source.IsEmpty)
        {
            long now = _gpu.VirtualClock.Now;
            completion = new CopyCompletion(now, now, 0, 0);
            return Errno.None;
        }

        if (_gpu.Injection.ConsumeCopyFailure())
        {
            Interlocked.Increment(ref _gpu.Counters.FailedCopies);
            long now = _gpu.VirtualClock.Now;
            completion = new CopyCompletion(now, now, 0, 0);
            return Errno.EIO;
        }

        long delay = _gpu.Injection.ConsumeCopyDelay();
        if (delay > 0)
        {
            Interlocked.Increment(ref _gpu.Counters.DelayedCopies);
        }

        Span<long> pagesByRoute = stackalloc long[RouteCount];
        lock (_lock)
        {
            long cost = MoveAndCost(memory, source, destination, pagesByRoute, out int transfers);
            long start = Math.Max(_gpu.VirtualClock.Now, _busyUntil);
            long end = start + cost + delay;
            _busyUntil = end;
            completion = new CopyCompletion(start, end, (long)source.Length << PageSize.Shift, transfers);

            // Under the lock, so the copy engine's events are in the order its batches ran.
            TraceEmitter trace = memory.Trace;
            if (trace.IsEnabled)
            {
                TraceCopy(trace, pagesByRoute, start, end);
            }
        }

        return Errno.None;
    }

    /// <summary>Copies the bytes, counts the pages, and returns the batch's time: each contiguous transfer costed on its route.</summary>
    private long MoveAndCost(PhysicalMemory memory, ReadOnlySpan<Pfn> source, ReadOnlySpan<Pfn> destination, Span<long> pagesByRoute, out int transfers)
    {
        bool moveBytes = memory.StoresPageData;
        SimGpuCostModel costs = _gpu.Costs;
        long cost = 0;
        transfers = 0;
        pagesByRoute.Clear();
        int runStart = 0;
        Route runRoute = RouteOf(source[0], destination[0]);
        for (int i = 0; i < source.Length; i++)
        {
            Route route = i == 0 ? runRoute : RouteOf(source[i], destination[i]);
            if (i > 0 && (route != runRoute || source[i].Value != source[i - 1].Value + 1 || destination[i].Value != destination[i - 1].Value + 1))
            {
                cost += TransferTime(costs, runRoute, i - runStart);
                transfers++;
                runStart = i;
                runRoute = route;
            }

            if (moveBytes)
            {
                memory.ReadPageData(source[i]).CopyTo(memory.PageData(destination[i]));
            }

            pagesByRoute[(int)route]++;
        }

        cost += TransferTime(costs, runRoute, source.Length - runStart);
        transfers++;
        Count(pagesByRoute, transfers);
        return cost;
    }

    private Route RouteOf(Pfn source, Pfn destination)
    {
        PhysicalMemory memory = _gpu.Memory;
        bool sourceDevice = memory.Page(source).IsZoneDevice;
        bool destinationDevice = memory.Page(destination).IsZoneDevice;
        return (sourceDevice, destinationDevice) switch
        {
            (false, true) => Route.HostToDevice,
            (true, false) => Route.DeviceToHost,
            (false, false) => Route.HostToHost,
            _ => _gpu.LocalMemory.Contains(source) && _gpu.LocalMemory.Contains(destination) ? Route.WithinDevice : Route.DeviceToDevice,
        };
    }

    // One Copy event per direction the batch moved pages in (a batch is usually one direction), each spanning the
    // whole batch on the device's only copy engine (number 0). Copies within RAM have no device direction: Unknown.
    private void TraceCopy(TraceEmitter trace, ReadOnlySpan<long> pagesByRoute, long start, long end)
    {
        ushort device = _gpu.TraceDevice;
        for (int route = 0; route < RouteCount; route++)
        {
            if (pagesByRoute[route] == 0)
            {
                continue;
            }

            TraceDirection direction = (Route)route switch
            {
                Route.HostToDevice => TraceDirection.HostToDevice,
                Route.DeviceToHost => TraceDirection.DeviceToHost,
                Route.WithinDevice or Route.DeviceToDevice => TraceDirection.DeviceToDevice,
                _ => TraceDirection.Unknown,
            };
            trace.Emit(TraceEvent.Copy(device, 0, direction, (ulong)pagesByRoute[route] << PageSize.Shift, start, end));
        }
    }

    // Under _lock (the memo).
    private long TransferTime(SimGpuCostModel costs, Route route, int pages)
    {
        long bytes = (long)pages << PageSize.Shift;
        switch (route)
        {
            case Route.WithinDevice:
                return costs.LocalCopyTime(bytes);
            case Route.DeviceToDevice:
                return costs.PeerCopyTime(bytes);
            default:
                if (bytes != _memoBytes)
                {
                    _memoTime = costs.CopyTime(bytes);
                    _memoBytes = bytes;
                }

                return _memoTime;
        }
    }

    // Under _lock, the only writer of these counters: plain adds, published for Snapshot's reads.
    private void Count(ReadOnlySpan<long> pagesByRoute, int transfers)
    {
        SimGpuCounters counters = _gpu.Counters;
        Add(ref counters.PagesCopiedToDevice, ref counters.BytesCopiedToDevice, pagesByRoute[(int)Route.HostToDevice]);
        Add(ref counters.PagesCopiedToHost, ref counters.BytesCopiedToHost, pagesByRoute[(int)Route.DeviceToHost]);
        Add(ref counters.PagesCopiedHostToHost, ref counters.BytesCopiedHostToHost, pagesByRoute[(int)Route.HostToHost]);
        Add(ref counters.PagesCopiedDeviceToDevice, ref counters.BytesCopiedDeviceToDevice,
            pagesByRoute[(int)Route.WithinDevice] + pagesByRoute[(int)Route.DeviceToDevice]);
        Volatile.Write(ref counters.Transfers, counters.Transfers + transfers);
        Volatile.Write(ref counters.CopyBatches, counters.CopyBatches + 1);
    }

    private static void Add(ref long pages, ref long bytes, long count)
    {
        if (count != 0)
        {
            Volatile.Write(ref pages, pages + count);
            Volatile.Write(ref bytes, bytes + (count << PageSize.Shift));
        }
    }
}
