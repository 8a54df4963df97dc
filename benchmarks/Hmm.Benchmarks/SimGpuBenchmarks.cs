using BenchmarkDotNet.Attributes;
using Hmm.Devices;
using Hmm.SimGpu;

namespace Hmm.Benchmarks;

/// <summary>
/// The simulated GPU's hot paths: a device access over 512 mapped pages (2 MiB) through the device page table,
/// timing-only and with its bytes, against a plain loop over an equal array of 512 entries; and a fault batch:
/// 256 fault records pushed (4 per page, so 192 duplicates) and fetched with duplicate merging. Figures are per
/// page and per fault; both must allocate nothing. The scale run's common cases, per access: a 512-byte warp access
/// inside a mapped page, and one to an unmapped page that stops and records a replayable fault; each also made as
/// hmmsim's kernel executor makes it, inside one <see cref="SimAccessRun"/> (the space and the fault buffer held, the
/// clock charged once).
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("SimGpu")]
public class SimGpuBenchmarks
{
    private const int Pages = 512;
    private const int Faults = 256;
    private const ulong Va = 0x7f00_0000_0000UL;
    private const ulong Unmapped = Va + (1UL << 30);
    private const ulong WarpBytes = 512;

    private SimulatedGpu _gpu = null!;
    private IDeviceAddressSpace _space = null!;
    private SimFaultBuffer _faultBuffer = null!;
    private SimAccessRun _run = null!;
    private DeviceFault[] _records = null!;
    private DeviceFault[] _batch = null!;
    private ulong[] _entries = null!;
    private byte[] _buffer = null!;

    [GlobalSetup]
    public void Setup()
    {
        var memory = new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 64UL << 20 });
        _gpu = new SimulatedGpu(memory, "bench-gpu", new SimGpuOptions { MemoryBytes = 8L << 20 });
        var pages = new Pfn[Pages];
        if (_gpu.LocalMemory.Allocate(pages) != Pages)
        {
            throw new InvalidOperationException("The benchmark GPU could not allocate its pages.");
        }

        foreach (Pfn page in pages)
        {
            memory.UnlockPage(page);
        }

        _space = _gpu.CreateAddressSpace("bench");
        _space.Map(Va, pages, DevicePteFlags.Read | DevicePteFlags.Write);
        _buffer = new byte[Pages * PageSize.Bytes];
        _entries = new ulong[Pages];
        for (int i = 0; i < Pages; i++)
        {
            _entries[i] = pages[i].Value;
        }

        _faultBuffer = (SimFaultBuffer)_gpu.Faults;
        _run = _gpu.CreateAccessRun((SimAddressSpace)_space);
        _records = new DeviceFault[Faults];
        for (int i = 0; i < Faults; i++)
        {
            _records[i] = new DeviceFault(_space, Va + ((ulong)(i % (Faults / 4)) * PageSize.Bytes), DeviceAccessKind.Read, i % 8, 0);
        }

        _batch = new DeviceFault[Faults];
    }

    /// <summary>The floor: one read per page from an array of 512 entries.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public ulong PlainLoopOverEqualArray()
    {
        ulong[] entries = _entries;
        ulong sum = 0;
        for (int i = 0; i < entries.Length; i++)
        {
            sum += entries[i];
        }

        return sum;
    }

    /// <summary>A timing-only access: page-table walk, permission check and charge, per page.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong AccessTimingOnly() =>
        _gpu.Access(_space, Va, Pages * (ulong)PageSize.Bytes, DeviceAccessKind.Read, default, 0, replayable: true).BytesDone;

    /// <summary>An access that reads every page's 4 KiB into a buffer, per page.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong AccessReadingBytes() =>
        _gpu.Access(_space, Va, Pages * (ulong)PageSize.Bytes, DeviceAccessKind.Read, _buffer, 0, replayable: true).BytesDone;

    /// <summary>512-byte accesses, one inside each mapped page, per access.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong SubPageAccesses()
    {
        ulong done = 0;
        for (int i = 0; i < Pages; i++)
        {
            done += _gpu.Access(_space, Va + ((ulong)i * PageSize.Bytes), WarpBytes, DeviceAccessKind.Read, default, 0, replayable: true).BytesDone;
        }

        return done;
    }

    /// <summary>512-byte accesses to 64 unmapped pages, 4 each (they stop and record faults), then one fetch, per access.</summary>
    [Benchmark(OperationsPerInvoke = Faults)]
    public int FaultingSubPageAccesses()
    {
        for (int i = 0; i < Faults; i++)
        {
            _gpu.Access(_space, Unmapped + ((ulong)(i % (Faults / 4)) * PageSize.Bytes), WarpBytes, DeviceAccessKind.Read, default, i % 8, replayable: true);
        }

        return _faultBuffer.FetchBatch(_batch).Count;
    }

    /// <summary>As <see cref="SubPageAccesses"/>, in one access run, per access.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong SubPageAccessesInOneRun()
    {
        ulong done = 0;
        _run.Begin();
        try
        {
            for (int i = 0; i < Pages; i++)
            {
                done += _run.Access(Va + ((ulong)i * PageSize.Bytes), WarpBytes, DeviceAccessKind.Read, default, 0).BytesDone;
            }
        }
        finally
        {
            _run.End();
        }

        return done;
    }

    /// <summary>As <see cref="FaultingSubPageAccesses"/>, the accesses in one access run, per access.</summary>
    [Benchmark(OperationsPerInvoke = Faults)]
    public int FaultingSubPageAccessesInOneRun()
    {
        _run.Begin();
        try
        {
            for (int i = 0; i < Faults; i++)
            {
                _run.Access(Unmapped + ((ulong)(i % (Faults / 4)) * PageSize.Bytes), WarpBytes, DeviceAccessKind.Read, default, i % 8);
            }
        }
        finally
        {
            _run.End();
        }

        return _faultBuffer.FetchBatch(_batch).Count;
    }

    /// <summary>256 fault records pushed and fetched as one batch, merging 192 duplicates, per fault.</summary>
    [Benchmark(OperationsPerInvoke = Faults)]
    public int FetchBatchWithDuplicates()
    {
        DeviceFault[] records = _records;
        for (int i = 0; i < records.Length; i++)
        {
            _faultBuffer.Push(records[i]);
        }

        return _faultBuffer.FetchBatch(_batch).Count;
    }
}
