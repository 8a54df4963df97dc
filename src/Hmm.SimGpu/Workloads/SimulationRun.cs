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
    private readonly ReplaySource? _replay;
    private readonly PageSet _touched;
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
    private string _currentPhase = "setup";
    private bool _disposed;

    /// <summary>Builds the machine for a run of <paramref name="options"/>, or for a replay of <paramref name="replay"/> with them.</summary>
    public SimulationRun(
        SimulationOptions options,
        TraceWriter? trace,
        IProgress<SimulationProgress>? progress,
        CancellationToken cancellationToken,
        ReplaySource? replay = null,
        SimulationReplayOptions? replayOptions = null)
    {
        _replay = replay;
        _options = options;
        _progress = progress;
        _cancellationToken = cancellationToken;
        _deviceBytes = options.ResolveDeviceMemoryBytes();
        long bufferPages = (long)(options.WorkingSetBytes / PageBytes);
        _workload = Workload.Create(options.Workload, bufferPages, options.Seed);
        _scratch = new byte[_workload.ReadsPerItem * PageBytes];
        _touched = new PageSet(bufferPages);
        long devicePages = (long)(_deviceBytes / PageBytes) * options.Devices;

        // Three quarters of device memory: the arrays' prefixes each end in a partly used 2 MiB block, and the
        // driver works in whole blocks.
        long fitExtent = _workload.ExtentFitting(devicePages * 3 / 4);
        _fitExtent = fitExtent == _workload.Items ? 0 : fitExtent;

        ulong ramBytes = AlignUp(options.WorkingSetBytes, SimulationOptions.ChunkBytes) + RamHeadroomBytes;
        _memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = ramBytes, StorePageData = !options.MetadataOnly });
        _mm = new Mm(_memory, "hmmsim");
        _buffer = _mm.Mmap(0, options.WorkingSetBytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous);

        // Attached once nothing before the devices' try block can throw, so a failed build never leaves the caller's
        // writer attached (Dispose detaches it); the devices set the trace's virtual clock, which they share.
        if (trace is not null)
        {
            _memory.Trace.Attach(trace);
            RunRecording.EmitConfiguration(_memory.Trace, options, _deviceBytes, _buffer);
        }

        _gpus = new SimulatedGpu[options.Devices];
        _drivers = new FaultServicingDriver[options.Devices];
        _spaces = new GpuVaSpace[options.Devices];
        _executors = new GpuKernelExecutor[options.Devices];
        var gpuOptions = new SimGpuOptions { MemoryBytes = (long)_deviceBytes, FaultBatchSize = options.BatchSize, Costs = replayOptions?.Costs ?? new SimGpuCostModel() };
        try
        {
            for (int d = 0; d < options.Devices; d++)
            {
                _gpus[d] = new SimulatedGpu(_memory, $"gpu{d}", gpuOptions, _clock);
                _drivers[d] = new FaultServicingDriver(_gpus[d], replayOptions?.ResidencyPolicy?.Invoke(d));
                _spaces[d] = _drivers[d].Attach(_mm);
                _executors[d] = new GpuKernelExecutor(_gpus[d], (SimAddressSpace)_spaces[d].Space, _drivers[d], _memory.Trace, d, _workload, replay, _touched, _buffer, options);
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
        if (_replay is not null)
        {
            return ExecuteReplay(_replay);
        }

        long iterations = _options.Iterations;
        _totalUnits = _workload.InputPages;
        if (_fitExtent > 0)
        {
            _totalUnits += (_fitExtent * iterations) + _fitExtent;
        }

        _totalUnits += (_workload.Items * iterations) + _workload.Items;

        var wall = Stopwatch.StartNew();
        RunPhase(RunRecording.CpuInitPhase, _workload.InputPages, CpuInitialise);
        if (_fitExtent > 0)
        {
            RunPhase(RunRecording.GpuFitPhase, _fitExtent, () => RunKernels(_fitExtent));
            RunPhase(RunRecording.CpuReadBackFitPhase, _fitExtent, () => CpuReadBack(_fitExtent));
            RunPhase(RunRecording.GpuOversubscribedPhase, _workload.Items, () => RunKernels(_workload.Items));
        }
        else
        {
            RunPhase(RunRecording.GpuPhase, _workload.Items, () => RunKernels(_workload.Items));
        }

        RunPhase(RunRecording.CpuReadBackPhase, _workload.Items, () => CpuReadBack(_workload.Items));
        wall.Stop();
        return BuildReport(wall.Elapsed);
    }

    /// <summary>
    /// Runs the recorded phases in order: a GPU phase launches the recorded kernels (the warps take the recorded
    /// work items), a CPU phase issues the recorded CPU accesses.
    /// </summary>
    private SimulationReport ExecuteReplay(ReplaySource replay)
    {
        var wall = Stopwatch.StartNew();
        TraceEventKind next;
        while ((next = replay.PeekControl()) != TraceEventKind.None)
        {
            if (next != TraceEventKind.Phase)
            {
                throw ReplaySource.Inconsistent($"a {next} record comes outside the phase it belongs to");
            }

            (uint phase, ulong extent) = replay.TakeControl().AsPhase();
            if (extent == 0 || extent > (ulong)_touched.Pages)
            {
                throw ReplaySource.Inconsistent($"phase {phase} has extent {extent}, outside the buffer's {_touched.Pages} pages");
            }

            long phaseExtent = (long)extent;
            RunPhase(phase, phaseExtent, RunRecording.PhaseOf(phase).Gpu ? () => ReplayKernels(replay) : () => ReplayCpu(replay, phaseExtent));
        }

        if (_phases.Count == 0)
        {
            throw ReplaySource.Inconsistent("the trace holds a run configuration but no phase: the run was not recorded to its end");
        }

        if (replay.DeviceWithItemsLeft() is int left and >= 0)
        {
            throw ReplaySource.Inconsistent($"device {left} has recorded work items outside any kernel launch");
        }

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

    private void RunPhase(uint number, long extent, Func<long> body)
    {
        (string name, string description, _) = RunRecording.PhaseOf(number);
        var phase = new SimulationPhaseReport(name, description);
        CounterSnapshot before = CounterSnapshot.Take(_gpus, _drivers);
        long start = _clock.Now;
        TraceEmitter trace = _memory.Trace;
        if (trace.IsEnabled)
        {
            trace.Emit(TraceEvent.Phase(number, (ulong)extent, start));
        }

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
            EmitCpuAccess((ulong)page * PageBytes, write: true);
            _mm.Write(_buffer + ((ulong)page * PageBytes), _page);
            Advance(1);
        }

        return pages;
    }

    private long RunKernels(long extent)
    {
        int devices = _executors.Length;
        for (int iteration = 0; iteration < _options.Iterations; iteration++)
        {
            for (int d = 0; d < devices; d++)
            {
                _executors[d].Launch(extent * d / devices, extent * (d + 1) / devices, extent);
            }

            RunLaunched();
        }

        return extent * _options.Iterations;
    }

    /// <summary>Launches the recorded kernels of a GPU phase, one launch per device at a time, and runs them.</summary>
    private long ReplayKernels(ReplaySource replay)
    {
        int devices = _executors.Length;
        Span<(long Start, long End)> rows = stackalloc (long, long)[devices];
        long units = 0;
        while (replay.PeekControl() == TraceEventKind.KernelLaunch)
        {
            long extent = 0;
            for (int d = 0; d < devices; d++)
            {
                TraceEvent launch = replay.PeekControl() == TraceEventKind.KernelLaunch ? replay.TakeControl() : default;
                (ulong first, ulong end, ulong launchExtent) = launch.Kind == TraceEventKind.KernelLaunch ? launch.AsKernelLaunch() : default;
                if (launch.Kind != TraceEventKind.KernelLaunch || launch.Device != d || first > end || end > launchExtent
                    || launchExtent > (ulong)_touched.Pages || (d > 0 && (long)launchExtent != extent))
                {
                    throw ReplaySource.Inconsistent($"the kernel launches of a GPU phase must name devices 0 to {devices - 1} in order, each with a row range inside one extent of at most {_touched.Pages} rows");
                }

                extent = (long)launchExtent;
                rows[d] = ((long)first, (long)end);
            }

            for (int d = 0; d < devices; d++)
            {
                _executors[d].Launch(rows[d].Start, rows[d].End, extent);
            }

            RunLaunched();
            if (replay.DeviceWithItemsLeft() is int left and >= 0)
            {
                throw ReplaySource.Inconsistent($"device {left} has more recorded work items than its kernel launch's rows");
            }

            units += extent;
        }

        return units;
    }

    /// <summary>Runs the launched kernels of every device, round by round, until none is busy.</summary>
    private void RunLaunched()
    {
        int devices = _executors.Length;
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
            ulong offset = (ulong)_workload.OutputPage(item) * PageBytes;
            EmitCpuAccess(offset, write: false);
            ReadAndCheck(offset, item, extent);
            Advance(1);
        }

        return extent;
    }

    /// <summary>
    /// Issues the recorded CPU accesses of a phase (whole pages): a write stores the page's initial contents, a
    /// read of an output page checks it against the workload's expected values; metadata-only, each touches its page.
    /// </summary>
    private long ReplayCpu(ReplaySource replay, long extent)
    {
        long accesses = 0;
        while (replay.PeekControl() == TraceEventKind.CpuAccess)
        {
            (ulong address, ulong bytes, bool write) = replay.TakeControl().AsCpuAccess();
            ulong offset = address - replay.RecordedBuffer;
            long page = (long)(offset / PageBytes);
            long item = write ? 0 : _workload.OutputItem(page);
            if (offset >= _options.WorkingSetBytes || offset % PageBytes != 0 || bytes != PageBytes || (!_options.MetadataOnly && (item < 0 || item >= extent)))
            {
                throw ReplaySource.Inconsistent($"CPU access 0x{address:x} of {bytes} bytes is not a {(write ? "write" : "read back of an output page")} of one whole page of the recorded buffer");
            }

            CheckCancellation(accesses);
            EmitCpuAccess(offset, write);
            if (_options.MetadataOnly)
            {
                TouchPage(_buffer + offset, write);
            }
            else if (write)
            {
                _workload.InitialContents(page, _page);
                _mm.Write(_buffer + offset, _page);
            }
            else
            {
                ReadAndCheck(offset, item, extent);
            }

            accesses++;
            Advance(1);
        }

        return accesses;
    }

    /// <summary>Reads the output page at <paramref name="offset"/> in the buffer and checks it holds what <paramref name="item"/> computes under <paramref name="extent"/>.</summary>
    private void ReadAndCheck(ulong offset, long item, long extent)
    {
        _mm.Read(_buffer + offset, _page);
        _workload.Expected(item, extent, _scratch, _expected);
        _pagesChecked++;
        if (!_page.AsSpan().SequenceEqual(_expected))
        {
            _dataErrors++;
        }
    }

    /// <summary>Records a CPU access of one page at <paramref name="offset"/> in the buffer, when tracing.</summary>
    private void EmitCpuAccess(ulong offset, bool write)
    {
        TraceEmitter trace = _memory.Trace;
        if (trace.IsEnabled)
        {
            trace.Emit(TraceEvent.CpuAccess(_buffer + offset, PageBytes, write, _clock.Now));
        }
    }

    /// <summary>The CPU touches one page on a metadata-only machine (see <see cref="TouchPages"/>).</summary>
    private void TouchPage(ulong address, bool write)
    {
        using MmapLockGuard guard = _mm.MmapReadLock();
        Vma vma = _mm.FindVma(_buffer) ?? throw new KernelBugException("hmmsim: the buffer's mapping is gone.");
        Touch(vma, address, write);
    }

    /// <summary>
    /// The CPU touches pages on a metadata-only machine, where it has no bytes to read or write: every page whose
    /// entry does not allow the access goes through the fault handler, as a real access would.
    /// </summary>
    private void TouchPages(long start, long end, bool write, Func<long, long> pageOf)
    {
        using MmapLockGuard guard = _mm.MmapReadLock();
        Vma vma = _mm.FindVma(_buffer) ?? throw new KernelBugException("hmmsim: the buffer's mapping is gone.");
        for (long index = start; index < end; index++)
        {
            ulong offset = (ulong)pageOf(index) * PageBytes;
            EmitCpuAccess(offset, write);
            Touch(vma, _buffer + offset, write);
            CheckCancellation(index);
            Advance(1);
        }
    }

    /// <summary>Faults the page at <paramref name="address"/> in until its entry allows the access; the caller holds the mmap lock.</summary>
    private void Touch(Vma vma, ulong address, bool write)
    {
        FaultFlags flags = write ? FaultFlags.Write : FaultFlags.None;
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
            PagesTouched = _touched.Count,
            AccessesReplayed = _replay?.AccessesReplayed ?? 0,
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
}
