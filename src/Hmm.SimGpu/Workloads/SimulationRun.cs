using System.Diagnostics;
using Hmm.Drivers;

namespace Hmm.SimGpu;

/// <summary>One run of <see cref="Simulation.Run"/>: the machine, the phases and the report being filled.</summary>
internal sealed class SimulationRun : IDisposable
{
    private const int PageBytes = 4096;

    /// <summary>RAM beyond the working set, for the page tables' and the migrations' own pages.</summary>
    private const ulong RamHeadroomBytes = 64UL << 20;

    private readonly SimulationOptions _options;
    private readonly IProgress<SimulationProgress>? _progress;
    private readonly CancellationToken _cancellationToken;
    private readonly ulong _deviceBytes;
    private readonly Workload _workload;
    private readonly PhysicalMemory _memory;
    private readonly VirtualClock _clock = new();
    private readonly SimulatedGpu[] _gpus;
    private readonly FaultServicingDriver[] _drivers;
    private readonly GpuVaSpace[] _spaces;
    private readonly GpuKernelExecutor[] _executors;
    private readonly Mm _mm;
    private readonly ulong _buffer;
    private readonly List<SimulationPhaseReport> _phases = [];
    private readonly byte[] _page = new byte[PageBytes];
    private readonly byte[] _expected = new byte[PageBytes];
    private readonly byte[] _scratch;
    private readonly long _fitExtent;
    private long _totalUnits;
    private long _doneUnits;
    private long _nextReport;
    private long _pagesChecked;
    private long _dataErrors;
    private readonly List<long> _extentsRun = [];
    private string _currentPhase = "setup";
    private bool _disposed;

    public SimulationRun(SimulationOptions options, TraceWriter? trace, IProgress<SimulationProgress>? progress, CancellationToken cancellationToken)
    {
        _options = options;
        _progress = progress;
        _cancellationToken = cancellationToken;
        _deviceBytes = options.ResolveDeviceMemoryBytes();
        long bufferPages = (long)(options.WorkingSetBytes / PageBytes);
        _workload = Workload.Create(options.Workload, bufferPages, options.Seed);
        _scratch = new byte[_workload.ReadsPerItem * PageBytes];
        long devicePages = (long)(_deviceBytes / PageBytes) * options.Devices;

        // Three quarters of device memory: the arrays' prefixes each end in a partly used 2 MiB block, and the
        // driver works in whole blocks.
        long fitExtent = _workload.ExtentFitting(devicePages * 3 / 4);
        _fitExtent = fitExtent == _workload.Items ? 0 : fitExtent;

        ulong ramBytes = AlignUp(options.WorkingSetBytes, SimulationOptions.ChunkBytes) + RamHeadroomBytes;
        _memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = ramBytes, StorePageData = !options.MetadataOnly });
        if (trace is not null)
        {
            _memory.Trace.UseVirtualClock(() => _clock.Now);
            _memory.Trace.Attach(trace);
        }

        _mm = new Mm(_memory, "hmmsim");
        _buffer = _mm.Mmap(0, options.WorkingSetBytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);
        _gpus = new SimulatedGpu[options.Devices];
        _drivers = new FaultServicingDriver[options.Devices];
        _spaces = new GpuVaSpace[options.Devices];
        _executors = new GpuKernelExecutor[options.Devices];
        var gpuOptions = new SimGpuOptions { MemoryBytes = (long)_deviceBytes, FaultBatchSize = options.BatchSize };
        try
        {
            for (int d = 0; d < options.Devices; d++)
            {
                _gpus[d] = new SimulatedGpu(_memory, $"gpu{d}", gpuOptions, _clock);
                _drivers[d] = new FaultServicingDriver(_gpus[d]);
                _spaces[d] = _drivers[d].Attach(_mm);
                _executors[d] = new GpuKernelExecutor(_gpus[d], _spaces[d].Space, _drivers[d], _buffer, options, _workload.ReadsPerItem);
            }
        }
        catch
        {
            // Tear down the devices built so far; the caller never gets the run to dispose.
            Dispose();
            throw;
        }
    }

    public SimulationReport Execute()
    {
        long iterations = _options.Iterations;
        _totalUnits = _workload.InputPages;
        if (_fitExtent > 0)
        {
            _totalUnits += (_fitExtent * iterations) + _fitExtent;
        }

        _totalUnits += (_workload.Items * iterations) + _workload.Items;

        var wall = Stopwatch.StartNew();
        RunPhase("cpu-init", "the CPU writes the kernels' input pages", CpuInitialise);
        if (_fitExtent > 0)
        {
            RunPhase("gpu-fit", "GPU kernels over the part of the buffer that fits in device memory", () => RunKernels(_fitExtent));
            RunPhase("cpu-readback-fit", "the CPU reads that part's results back and checks them", () => CpuReadBack(_fitExtent));
            RunPhase("gpu-oversubscribed", "GPU kernels over the whole buffer, more than device memory holds", () => RunKernels(_workload.Items));
        }
        else
        {
            RunPhase("gpu", "GPU kernels over the whole buffer, which fits in device memory", () => RunKernels(_workload.Items));
        }

        RunPhase("cpu-readback", "the CPU reads every result back and checks it", () => CpuReadBack(_workload.Items));
        wall.Stop();
        return BuildReport(wall.Elapsed);
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;

        // The process exits first, as it would with the GPU still attached: its pages (device pages included) are
        // freed where they are. Detaching first would make each driver migrate everything resident back to RAM.
        _mm.Exit();
        foreach (GpuVaSpace? space in _spaces)
        {
            space?.Dispose();
        }

        foreach (SimulatedGpu? gpu in _gpus)
        {
            gpu?.Device.Unbind(Timeout.InfiniteTimeSpan);
        }

        _memory.Trace.Detach();
    }

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) / alignment * alignment;

    private void RunPhase(string name, string description, Func<long> body)
    {
        var phase = new SimulationPhaseReport(name, description);
        CounterSnapshot before = CounterSnapshot.Take(_gpus, _drivers);
        long start = _clock.Now;
        var wall = Stopwatch.StartNew();
        _currentPhase = name;
        Report();
        phase.WorkUnits = body();
        phase.WallTime = wall.Elapsed;
        phase.SimulatedNanoseconds = _clock.Now - start;
        CounterSnapshot delta = CounterSnapshot.Take(_gpus, _drivers) - before;
        phase.DeviceFaults = delta.DeviceFaults;
        phase.CpuFaults = delta.CpuFaults;
        phase.PagesToDevice = delta.PagesToDevice;
        phase.PagesToRam = delta.PagesToRam;
        phase.EvictedPages = delta.EvictedPages;
        _phases.Add(phase);
        Report();
    }

    private long CpuInitialise()
    {
        long pages = _workload.InputPages;
        if (_options.MetadataOnly)
        {
            TouchPages(0, pages, write: true, page => page);
            return pages;
        }

        for (long page = 0; page < pages; page++)
        {
            CheckCancellation(page);
            _workload.InitialContents(page, _page);
            _mm.Write(_buffer + ((ulong)page * PageBytes), _page);
            Advance(1);
        }

        return pages;
    }

    private long RunKernels(long extent)
    {
        _extentsRun.Add(extent);
        int devices = _executors.Length;
        for (int iteration = 0; iteration < _options.Iterations; iteration++)
        {
            for (int d = 0; d < devices; d++)
            {
                _executors[d].Launch(_workload, extent * d / devices, extent * (d + 1) / devices, extent);
            }

            long completed = ItemsCompleted();
            bool busy = true;
            while (busy)
            {
                _cancellationToken.ThrowIfCancellationRequested();
                busy = false;
                for (int d = 0; d < devices; d++)
                {
                    if (_executors[d].Busy)
                    {
                        _executors[d].RunRound();
                        busy |= _executors[d].Busy;
                    }
                }

                long now = ItemsCompleted();
                Advance(now - completed);
                completed = now;
            }
        }

        return extent * _options.Iterations;
    }

    private long CpuReadBack(long extent)
    {
        if (_options.MetadataOnly)
        {
            TouchPages(0, extent, write: false, _workload.OutputPage);
            return extent;
        }

        for (long item = 0; item < extent; item++)
        {
            CheckCancellation(item);
            _mm.Read(_buffer + ((ulong)_workload.OutputPage(item) * PageBytes), _page);
            _workload.Expected(item, extent, _scratch, _expected);
            _pagesChecked++;
            if (!_page.AsSpan().SequenceEqual(_expected))
            {
                _dataErrors++;
            }

            Advance(1);
        }

        return extent;
    }

    /// <summary>
    /// The CPU touches pages on a metadata-only machine, where it has no bytes to read or write: every page whose
    /// entry does not allow the access goes through the fault handler, as a real access would.
    /// </summary>
    private void TouchPages(long start, long end, bool write, Func<long, long> pageOf)
    {
        using MmapLockGuard guard = _mm.MmapReadLock();
        Vma vma = _mm.FindVma(_buffer) ?? throw new KernelBugException("hmmsim: the buffer's mapping is gone.");
        FaultFlags flags = write ? FaultFlags.Write : FaultFlags.None;
        for (long index = start; index < end; index++)
        {
            ulong address = _buffer + ((ulong)pageOf(index) * PageBytes);
            Pte pte = _mm.ReadPte(address);
            while (!pte.IsPresent || (write && !pte.IsWritable))
            {
                VmFaultResult result = _mm.HandleMmFault(vma, address, flags);
                if (result != VmFaultResult.None)
                {
                    throw new KernelBugException($"hmmsim: the CPU fault at 0x{address:x} failed with {result}.");
                }

                pte = _mm.ReadPte(address);
            }

            CheckCancellation(index);
            Advance(1);
        }
    }

    /// <summary>CPU loops look at the token every 4096 pages.</summary>
    private void CheckCancellation(long index)
    {
        if ((index & 4095) == 0)
        {
            _cancellationToken.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Rows the kernels completed so far on every device (progress counts rows, as the phases' work units do).</summary>
    private long ItemsCompleted()
    {
        long items = 0;
        foreach (GpuKernelExecutor executor in _executors)
        {
            items += executor.ItemsCompleted;
        }

        return items / _executors[0].ItemsPerRow;
    }

    private void Advance(long units)
    {
        _doneUnits += units;
        if (_progress is not null && _doneUnits >= _nextReport)
        {
            Report();
        }
    }

    private void Report()
    {
        if (_progress is null)
        {
            return;
        }

        _nextReport = _doneUnits + Math.Max(1, _totalUnits / 200);
        _progress.Report(new SimulationProgress(_currentPhase, _doneUnits, _totalUnits));
    }

    private SimulationReport BuildReport(TimeSpan wall)
    {
        CheckFaultAccounting();
        CounterSnapshot totals = CounterSnapshot.Take(_gpus, _drivers);
        var report = new SimulationReport(_options, _deviceBytes, _phases)
        {
            PagesTouched = CountPagesTouched(),
            DeviceFaults = totals.DeviceFaults,
            FaultBatches = totals.Batches,
            DuplicatesMerged = totals.DuplicatesMerged,
            CpuFaults = totals.CpuFaults,
            PagesToDevice = totals.PagesToDevice,
            BytesToDevice = totals.BytesToDevice,
            PagesToRam = totals.PagesToRam,
            BytesToRam = totals.BytesToRam,
            EvictedBlocks = totals.EvictedBlocks,
            EvictedPages = totals.EvictedPages,
            SimulatedNanoseconds = _clock.Now,
            DataCheck = _options.MetadataOnly ? DataCheckResult.Skipped : _dataErrors == 0 ? DataCheckResult.Passed : DataCheckResult.Failed,
            PagesChecked = _pagesChecked,
            DataErrors = _dataErrors,
            WallTime = wall,
        };
        return report;
    }

    /// <summary>
    /// The report takes its batch and duplicate counts from the drivers; they must agree with what each device's
    /// fault buffer handed out (every record fetched is either a fault the driver serviced or a merged duplicate).
    /// </summary>
    private void CheckFaultAccounting()
    {
        for (int d = 0; d < _gpus.Length; d++)
        {
            SimGpuStatistics device = _gpus[d].Statistics;
            FaultServicingStatistics driver = _drivers[d].Statistics;
            if (driver.Batches != device.BatchesFetched || driver.DuplicatesMerged != device.DuplicatesMerged
                || driver.Faults + driver.DuplicatesMerged != device.FaultsFetched || device.FaultsFetched != device.FaultsRaised)
            {
                throw new KernelBugException(
                    $"hmmsim: {_gpus[d].Name}'s driver counted {driver.Batches} batches, {driver.Faults} faults and {driver.DuplicatesMerged} duplicates, " +
                    $"but its fault buffer raised {device.FaultsRaised}, handed out {device.FaultsFetched} records in {device.BatchesFetched} batches and merged {device.DuplicatesMerged}.");
            }
        }
    }

    /// <summary>Distinct buffer pages the kernels touched: every input and output page of every extent they ran.</summary>
    private long CountPagesTouched()
    {
        long pages = (long)(_options.WorkingSetBytes / PageBytes);
        ulong[] touched = new ulong[(pages + 63) / 64];
        long count = 0;
        foreach (long extent in _extentsRun)
        {
            for (long item = 0; item < extent; item++)
            {
                for (int read = 0; read <= _workload.ReadsPerItem; read++)
                {
                    long page = read == _workload.ReadsPerItem ? _workload.OutputPage(item) : _workload.InputPage(item, read, extent);
                    ulong bit = 1UL << (int)(page & 63);
                    if ((touched[page >> 6] & bit) == 0)
                    {
                        touched[page >> 6] |= bit;
                        count++;
                    }
                }
            }
        }

        return count;
    }
}
