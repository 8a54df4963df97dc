using System.Numerics;
using Hmm.Devices;
using Hmm.Drivers;

namespace Hmm.SimGpu;

/// <summary>
/// Runs a kernel's work items on one device: engines x warps, each warp one item at a time, one access per turn
/// through <see cref="IDeviceBackend.Access"/> with replayable faults. A work item is a sub-page slice of a row
/// (<see cref="SimulationOptions.BytesPerItem"/> bytes of its output page, and the matching words of its input
/// pages); items are dealt to the warps round-robin in order, so the warps next to each other work on the same
/// pages, as on a real GPU. A warp that misses stalls with its fault in the device's buffer while the other warps
/// go on; when a batch's worth of faults is pending, or every working warp is stalled, the driver services a
/// batch and the stalled warps retry. Several warps faulting on one page before a service put duplicate records in
/// one batch, which the device merges; a warp whose page is still missing after a service faults again.
/// Single-threaded and deterministic.
/// </summary>
internal sealed class GpuKernelExecutor
{
    private const int PageBytes = 4096;

    /// <summary>Services in a row without any warp completing an access before the run is declared livelocked.</summary>
    private const int LivelockServices = 100_000;

    private readonly IDeviceBackend _device;
    private readonly IDeviceAddressSpace _space;
    private readonly FaultServicingDriver _driver;
    private readonly ulong _bufferAddress;
    private readonly int _warpsPerEngine;
    private readonly int _batchSize;
    private readonly Warp[] _warps;
    private readonly byte[]? _scratch;
    private readonly int _scratchPerWarp;
    private readonly int _itemShift;
    private readonly int _wordsPerItem;
    private Workload? _workload;
    private long _extent;
    private long _nextItem;
    private long _endItem;
    private int _active;
    private int _stalled;
    private int _servicesWithoutProgress;

    public GpuKernelExecutor(IDeviceBackend device, IDeviceAddressSpace space, FaultServicingDriver driver, ulong bufferAddress, SimulationOptions options, int maxReadsPerItem)
    {
        _device = device;
        _space = space;
        _driver = driver;
        _bufferAddress = bufferAddress;
        _warpsPerEngine = options.WarpsPerEngine;
        _batchSize = options.BatchSize;
        _warps = new Warp[options.Engines * options.WarpsPerEngine];
        _scratchPerWarp = (maxReadsPerItem + 1) * PageBytes;
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

    /// <summary>Starts the work items of rows [<paramref name="start"/>, <paramref name="end"/>) of <paramref name="workload"/> under <paramref name="extent"/>.</summary>
    public void Launch(Workload workload, long start, long end, long extent)
    {
        _workload = workload;
        _extent = extent;
        _nextItem = start << _itemShift;
        _endItem = end << _itemShift;
        _active = 0;
        _stalled = 0;
        for (int w = 0; w < _warps.Length; w++)
        {
            ref Warp warp = ref _warps[w];
            warp = default;
            if (_nextItem < _endItem)
            {
                warp.Item = _nextItem++;
                warp.Active = true;
                _active++;
            }
        }
    }

    /// <summary>Gives every warp that is not stalled one access, servicing batches as they fill.</summary>
    public void RunRound()
    {
        Workload workload = _workload!;
        int reads = workload.ReadsPerItem;
        for (int w = 0; w < _warps.Length; w++)
        {
            ref Warp warp = ref _warps[w];
            if (!warp.Active || warp.Stalled)
            {
                continue;
            }

            Span<byte> scratch = _scratch is null ? default : _scratch.AsSpan(w * _scratchPerWarp, (reads + 1) * PageBytes);
            bool write = warp.Step == reads;
            long row = warp.Item >> _itemShift;
            int firstWord = (int)(warp.Item & (ItemsPerRow - 1)) * _wordsPerItem;
            long page;
            int first = firstWord;
            int words = _wordsPerItem;
            if (write)
            {
                page = workload.OutputPage(row);
            }
            else
            {
                page = workload.InputPage(row, warp.Step, _extent);
                (first, words) = workload.InputWords(warp.Step, firstWord, _wordsPerItem);
            }

            int offset = (warp.Step * PageBytes) + (first * sizeof(ulong));
            int length = words * sizeof(ulong);
            Span<byte> data = scratch.IsEmpty ? default : scratch.Slice(offset, length);
            DeviceAccessResult result = _device.Access(
                _space, _bufferAddress + ((ulong)page * PageBytes) + ((ulong)first * sizeof(ulong)), (ulong)length,
                write ? DeviceAccessKind.Write : DeviceAccessKind.Read, data, w / _warpsPerEngine, replayable: true);
            if (!result.Completed)
            {
                warp.Stalled = true;
                _stalled++;
                if (_device.Faults.Pending >= _batchSize)
                {
                    Service();
                }

                continue;
            }

            _servicesWithoutProgress = 0;
            if (!write)
            {
                warp.Step++;
                if (warp.Step == reads && !scratch.IsEmpty)
                {
                    workload.Compute(row, _extent, scratch.Slice(0, reads * PageBytes), scratch.Slice(reads * PageBytes, PageBytes), firstWord, _wordsPerItem);
                }

                continue;
            }

            ItemsCompleted++;
            if (_nextItem < _endItem)
            {
                warp.Item = _nextItem++;
                warp.Step = 0;
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

    /// <summary>The driver services one batch; then every stalled warp may retry.</summary>
    private void Service()
    {
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
        public bool Active;
        public bool Stalled;
    }
}
