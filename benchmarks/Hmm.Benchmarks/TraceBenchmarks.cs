using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;

namespace Hmm.Benchmarks;

/// <summary>
/// The cost of emitting one trace event through a <see cref="TraceEmitter"/>, as a layer will: with tracing off
/// (no writer attached: the layer's <see cref="TraceEmitter.IsEnabled"/> test, then nothing) and on (the event
/// built by its factory and written into a <see cref="TraceWriter"/> over a <see cref="System.IO.Pipelines.PipeWriter"/> on
/// <see cref="Stream.Null"/>, so the figure is the trace's own cost, not a disk's). The baseline is an empty,
/// non-inlined method call. Both paths allocate nothing per event.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("Trace")]
public class TraceBenchmarks
{
    private readonly TraceEmitter _off = new();
    private readonly TraceEmitter _on = new();
    private TraceWriter _writer = null!;
    private ulong _address;

    [GlobalSetup]
    public void Setup()
    {
        _writer = TraceWriter.Create(Stream.Null);
        _on.Attach(_writer);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _on.Detach();
        _writer.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void EmptyCall()
    {
        _address += PageSize.Bytes;
        Empty(_address);
    }

    [Benchmark]
    public void EmitTracingOff() => Emit(_off);

    [Benchmark]
    public void EmitTracingOn() => Emit(_on);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Empty(ulong address)
    {
    }

    // The pattern a layer uses: test, then build and emit, so that nothing is built when tracing is off.
    private void Emit(TraceEmitter trace)
    {
        _address += PageSize.Bytes;
        if (trace.IsEnabled)
        {
            trace.Emit(TraceEvent.CpuFault(_address, FaultFlags.Write, VmFaultResult.None, (long)_address));
        }
    }
}
