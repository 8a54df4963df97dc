using System.Numerics;
using Hmm.Devices;
using Hmm.Drivers;

namespace Hmm.SimGpu;

/// <summary>
/// Runs a kernel's work items on one device: engines x warps, each warp one item at a time, one access per turn
/// with the effects of <see cref="IDeviceBackend.Access"/> with replayable faults. A work item is a sub-page slice
/// of a row (<see cref="SimulationOptions.BytesPerItem"/> bytes of its output page, and the matching words of its input
/// pages); items are dealt to the warps round-robin in order, so the warps next to each other work on the same
/// pages, as on a real GPU. A warp that misses stalls with its fault in the device's buffer while the other warps
/// go on; when a batch's worth of faults is pending, or every working warp is stalled, the driver services a
/// batch and the stalled warps retry. Several warps faulting on one page before a service put duplicate records in
/// one batch, which the device merges; a warp whose page is still missing after a service faults again.
/// Single-threaded and deterministic. The accesses between two services are one <see cref="SimAccessRun"/>: the
/// same effects as a <see cref="SimulatedGpu.Access"/> each, without an atomic each.
/// </summary>
/// <remarks>
/// A warp is given an item's accesses all at once when it takes the item: from the workload (a run), or from the
/// recorded access stream (a replay, <see cref="ReplaySource"/>). That is also when a traced run records them
/// (<see cref="TraceEventKind.DeviceAccess"/>): the item's input, whatever faults and retries follow.
/// </remarks>
internal sealed class GpuKernelExecutor
{
    private const int PageBytes = 4096;

    /// <summary>Services in a row without any warp completing an access before the run is declared livelocked.</summary>
    private const int LivelockServices = 100_000;

    private const int MaxAccesses = ReplaySource.MaxAccessesPerItem;

    private readonly SimulatedGpu _device;
    private readonly SimAccessRun _run;
    private readonly FaultServicingDriver _driver;
    private readonly TraceEmitter _trace;
    private readonly ushort _deviceIndex;
    private readonly Workload _workload;
    private readonly ReplaySource? _replay;
    private readonly PageSet _touched;
    private readonly ulong _bufferAddress;
    private readonly int _batchSize;
    private readonly Warp[] _warps;
    private readonly int[] _engineOf;   // by warp: an integer division per access showed in the profile
    private readonly WorkAccess[] _accesses;
    private readonly TraceEvent[] _recorded = new TraceEvent[MaxAccesses];
    private readonly byte[]? _scratch;
    private readonly int _scratchPerWarp;
    private readonly int _itemShift;
    private readonly int _wordsPerItem;
    private long _extent;
    private long _nextItem;
    private long _endItem;
    private int _active;
    private int _stalled;
    private int _servicesWithoutProgress;

    public GpuKernelExecutor(
        SimulatedGpu device, SimAddressSpace space, FaultServicingDriver driver, TraceEmitter trace, int deviceIndex,
        Workload workload, ReplaySource? replay, PageSet touched, ulong bufferAddress, SimulationOptions options)
    {
        _device = device;
        _run = device.CreateAccessRun(space);
        _driver = driver;
        _trace = trace;
        _deviceIndex = (ushort)deviceIndex;
        _workload = workload;
        _replay = replay;
        _touched = touched;
        _bufferAddress = bufferAddress;
        _batchSize = options.BatchSize;
        _warps = new Warp[options.Engines * options.WarpsPerEngine];
        _engineOf = new int[_warps.Length];
        for (int w = 0; w < _warps.Length; w++)
        {
            _engineOf[w] = w / options.WarpsPerEngine;
        }

        _accesses = new WorkAccess[_warps.Length * MaxAccesses];
        _scratchPerWarp = (workload.ReadsPerItem + 1) * PageBytes;
        _scratch = options.MetadataOnly ? null : new byte[_warps.Length * _scratchPerWarp];
        _itemShift = BitOperations.Log2((uint)(PageBytes / options.BytesPerItem));
        _wordsPerItem = options.BytesPerItem / sizeof(ulong);
    }

    /// <summary>Whether a launched kernel still has items running or waiting.</summary>
    public bool Busy => _active > 0;

    /// <summary>Work items (row slices) this device completed since it was created.</summary>
    public long ItemsCompleted { get; private set; }

    /// <summary>Work items per row (output page).</summary>
    public int ItemsPerRow => 1 << _itemShift;

    /// <summary>Starts the work items of rows [<paramref name="start"/>, <paramref name="end"/>) of the kernel over <paramref name="extent"/> rows.</summary>
    public void Launch(long start, long end, long extent)
    {
        if (_trace.IsEnabled)
        {
            _trace.Emit(TraceEvent.KernelLaunch(_deviceIndex, (ulong)start, (ulong)end, (ulong)extent, _trace.VirtualNow));
        }

        _extent = extent;
        _nextItem = start << _itemShift;
        _endItem = end << _itemShift;
        _active = 0;
        _stalled = 0;
        for (int w = 0; w < _warps.Length; w++)
        {
            _warps[w] = default;
            if (_nextItem < _endItem)
            {
                Deal(w);
                _active++;
            }
        }
    }

    /// <summary>Gives every warp that is not stalled one access, servicing batches as they fill.</summary>
    public void RunRound()
    {
        try
        {
            RunWarps();
        }
        finally
        {
            _run.End();
        }
    }

    private void RunWarps()
    {
        for (int w = 0; w < _warps.Length; w++)
        {
            ref Warp warp = ref _warps[w];
            if (!warp.Active || warp.Stalled)
            {
                continue;
            }

            if (!_run.IsOpen)
            {
                _run.Begin();
            }

            ref WorkAccess access = ref _accesses[(w * MaxAccesses) + warp.Step];
            Span<byte> scratch = _scratch is null ? default : _scratch.AsSpan(w * _scratchPerWarp, _scratchPerWarp);
            Span<byte> data = scratch.IsEmpty ? default : scratch.Slice(access.ScratchOffset, access.Length);
            DeviceAccessResult result = _run.Access(access.Address, (ulong)access.Length, access.Kind, data, _engineOf[w]);
            if (!result.Completed)
            {
                warp.Stalled = true;
                _stalled++;
                if (_run.PendingFaults >= _batchSize)
                {
                    Service();
                }

                continue;
            }

            _servicesWithoutProgress = 0;
            warp.Step++;
            if (warp.Step < warp.Accesses)
            {
                if (warp.Step == warp.Accesses - 1 && !scratch.IsEmpty)
                {
                    // Every input is in: compute the output slice the last access writes.
                    int reads = warp.Accesses - 1;
                    long row = warp.Item >> _itemShift;
                    int firstWord = (int)(warp.Item & (ItemsPerRow - 1)) * _wordsPerItem;
                    _workload.Compute(row, _extent, scratch.Slice(0, reads * PageBytes), scratch.Slice(reads * PageBytes, PageBytes), firstWord, _wordsPerItem);
                }

                continue;
            }

            ItemsCompleted++;
            if (_nextItem < _endItem)
            {
                Deal(w);
            }
            else
            {
                warp.Active = false;
                _active--;
            }
        }

        if (_active > 0 && _stalled == _active)
        {
            Service();
        }
    }

    /// <summary>Gives warp <paramref name="w"/> the next work item: its accesses, from the workload or the recording.</summary>
    private void Deal(int w)
    {
        ref Warp warp = ref _warps[w];
        Span<WorkAccess> accesses = _accesses.AsSpan(w * MaxAccesses, MaxAccesses);
        long item = _nextItem++;
        int count = _replay is null ? Generate(item, accesses) : Replayed(accesses, out item);
        warp.Item = item;
        warp.Step = 0;
        warp.Accesses = count;
        warp.Active = true;
        for (int a = 0; a < count; a++)
        {
            _touched.Add((long)((accesses[a].Address - _bufferAddress) / PageBytes));
        }

        if (_trace.IsEnabled)
        {
            long now = _run.IsOpen ? _run.Now : _trace.VirtualNow;
            for (int a = 0; a < count; a++)
            {
                _trace.Emit(TraceEvent.DeviceAccess(
                    _deviceIndex, (uint)w, accesses[a].Address, (ulong)accesses[a].Length, (TraceDeviceAccess)accesses[a].Kind, a == count - 1, (ulong)item, now));
            }
        }
    }

    /// <summary>The workload's accesses of <paramref name="item"/>: its input slices, in order, then its output slice.</summary>
    private int Generate(long item, Span<WorkAccess> accesses)
    {
        int reads = _workload.ReadsPerItem;
        long row = item >> _itemShift;
        int firstWord = (int)(item & (ItemsPerRow - 1)) * _wordsPerItem;
        for (int read = 0; read < reads; read++)
        {
            long page = _workload.InputPage(row, read, _extent);
            (int first, int words) = _workload.InputWords(read, firstWord, _wordsPerItem);
            accesses[read] = new WorkAccess(
                _bufferAddress + ((ulong)page * PageBytes) + ((ulong)first * sizeof(ulong)), words * sizeof(ulong), DeviceAccessKind.Read, (read * PageBytes) + (first * sizeof(ulong)));
        }

        accesses[reads] = new WorkAccess(
            _bufferAddress + ((ulong)_workload.OutputPage(row) * PageBytes) + ((ulong)firstWord * sizeof(ulong)), _wordsPerItem * sizeof(ulong), DeviceAccessKind.Write,
            (reads * PageBytes) + (firstWord * sizeof(ulong)));
        return reads + 1;
    }

    /// <summary>
    /// The next recorded item of this device, its addresses moved from the recorded buffer to this run's. With
    /// data, the item must have the workload's shape (its reads, then the write its values are computed for).
    /// </summary>
    private int Replayed(Span<WorkAccess> accesses, out long item)
    {
        int count = _replay!.NextItem(_deviceIndex, _recorded);
        (_, _, _, _, _, ulong recordedItem) = _recorded[0].AsDeviceAccess();
        bool withData = _scratch is not null;
        if (withData && count != _workload.ReadsPerItem + 1)
        {
            throw ReplaySource.Inconsistent($"a work item on device {_deviceIndex} has {count} accesses, where the recorded workload's items have {_workload.ReadsPerItem + 1}");
        }

        if (withData && (recordedItem >> _itemShift) >= (ulong)_workload.Items)
        {
            throw ReplaySource.Inconsistent($"work item {recordedItem} on device {_deviceIndex} is not an item of the recorded workload");
        }

        ulong bufferBytes = (ulong)_touched.Pages * PageBytes;
        for (int a = 0; a < count; a++)
        {
            (_, ulong address, ulong bytes, TraceDeviceAccess kind, _, ulong itemOfAccess) = _recorded[a].AsDeviceAccess();
            ulong offset = address - _replay.RecordedBuffer;
            bool shapeWrong = withData && (a == count - 1 ? kind != TraceDeviceAccess.Write : kind != TraceDeviceAccess.Read);
            if (offset >= bufferBytes || bytes == 0 || bytes > PageBytes || (offset % PageBytes) + bytes > PageBytes || kind > TraceDeviceAccess.Atomic || itemOfAccess != recordedItem || shapeWrong)
            {
                throw ReplaySource.Inconsistent($"access 0x{address:x} of {bytes} bytes ({kind}) of work item {itemOfAccess} on device {_deviceIndex} is not a {(shapeWrong ? "read then write of the workload" : "access within one page of the recorded buffer")}");
            }

            accesses[a] = new WorkAccess(_bufferAddress + offset, (int)bytes, (DeviceAccessKind)kind, (a * PageBytes) + (int)(offset % PageBytes));
        }

        item = (long)recordedItem;
        return count;
    }

    /// <summary>Ends the access run; the driver services one batch; then every stalled warp may retry.</summary>
    private void Service()
    {
        _run.End();
        if (++_servicesWithoutProgress > LivelockServices)
        {
            throw new KernelBugException($"{_device.Name}: {LivelockServices} fault batches serviced without any warp making progress; the device memory is too small for the warps in flight.");
        }

        _driver.ServiceNextBatch();
        if (_stalled == 0)
        {
            return;
        }

        for (int w = 0; w < _warps.Length; w++)
        {
            _warps[w].Stalled = false;
        }

        _stalled = 0;
    }

    private struct Warp
    {
        public long Item;
        public int Step;
        public int Accesses;
        public bool Active;
        public bool Stalled;
    }
}
