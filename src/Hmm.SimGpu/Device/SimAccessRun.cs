using System.Diagnostics;
using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// A run of replayable device accesses through one address space, made by one thread between two fault services
/// (a kernel executor's warp round): the same accesses as <see cref="SimulatedGpu.Access"/>, with the same
/// effects, at less cost. The run holds the space's gate and the fault buffer's lock from <see cref="Begin"/> to
/// <see cref="End"/> instead of taking them per access, and charges its accesses' time to the clock once, at
/// <see cref="End"/>, instead of one atomic add each. Those atomics were most of a metadata-only run's access cost.
/// </summary>
/// <remarks>
/// <para>A fault raised in the run is stamped <see cref="Now"/>: the clock plus the time the run has yet to charge,
/// which is what the per-access path stamps when no other thread advances the clock meanwhile. Under concurrent
/// advances the clock's final value is the same (additions commute); only the stamps may order differently.</para>
/// <para>Concurrency model: one thread, between <see cref="Begin"/> and <see cref="End"/> (always in a
/// <c>finally</c>); the space's other users (a TLB invalidation, a map) and the buffer's (a fetch, another space's
/// fault) wait for the run's end, so a run must not call the driver or the core. The executor does its own
/// bookkeeping inside a run (a warp's next work item, from the workload or from a replay's buffered stream), which
/// takes no lock of the device's. Lock order as everywhere: the gate, then the buffer's lock.</para>
/// </remarks>
internal sealed class SimAccessRun
{
    private readonly SimulatedGpu _gpu;
    private readonly SimAddressSpace _space;
    private readonly SimFaultBuffer _faults;
    private readonly long[] _raised = new long[3];   // by DeviceAccessKind: the metrics recorded at End
    private long _dropped;
    private bool _logOverflow;
    private long _uncharged;
    private bool _open;

    // The last local-only access size and its time: warps repeat one access size, and the division that costs an
    // access was a fifth of the executor's own time.
    private long _memoBytes = -1;
    private long _memoTime;

    internal SimAccessRun(SimulatedGpu gpu, SimAddressSpace space, SimFaultBuffer faults)
    {
        _gpu = gpu;
        _space = space;
        _faults = faults;
    }

    /// <summary>Whether the run is between <see cref="Begin"/> and <see cref="End"/>.</summary>
    public bool IsOpen => _open;

    /// <summary>The simulated time as this run's accesses see it: the clock plus the time not yet charged.</summary>
    public long Now => _gpu.VirtualClock.Now + _uncharged;

    /// <summary>Faults waiting in the buffer (exact: the run holds the buffer's lock).</summary>
    public int PendingFaults => _faults.Pending;

    /// <summary>Takes the space's gate and the fault buffer's lock.</summary>
    public void Begin()
    {
        Debug.Assert(!_open, "an access run begun twice");
        _space.Gate.Acquire();
        _faults.Lock.Acquire();
        _open = true;
    }

    /// <summary>
    /// One replayable access, as <see cref="SimulatedGpu.Access"/> with <c>replayable: true</c>; the caller passes
    /// only valid arguments (a non-empty access within one page, a valid kind, a buffer of its length or none).
    /// </summary>
    public DeviceAccessResult Access(ulong address, ulong length, DeviceAccessKind kind, Span<byte> data, int engine)
    {
        Debug.Assert(_open, "an access outside a run");
        DeviceAccessResult result = _gpu.AccessLocked(_space, address, length, kind, data, out long localBytes, out long remoteBytes);
        if (result.BytesDone != 0)
        {
            _uncharged += AccessTime(localBytes, remoteBytes);
        }

        if (!result.Completed)
        {
            SimFaultBuffer.PushOutcome outcome = _faults.PushLocked(new DeviceFault(_space, result.FaultAddress, kind, engine, Now));
            _raised[(int)kind]++;
            if (outcome != SimFaultBuffer.PushOutcome.Queued)
            {
                _dropped++;
                _logOverflow |= outcome == SimFaultBuffer.PushOutcome.DroppedFirst;
            }
        }

        return result;
    }

    private long AccessTime(long localBytes, long remoteBytes)
    {
        if (remoteBytes != 0)
        {
            return _gpu.Costs.AccessTime(localBytes, remoteBytes);
        }

        if (localBytes != _memoBytes)
        {
            _memoTime = _gpu.Costs.AccessTime(localBytes, 0);
            _memoBytes = localBytes;
        }

        return _memoTime;
    }

    /// <summary>Charges the run's time to the clock, leaves the locks, then records the metrics and logs an overflow.</summary>
    public void End()
    {
        if (!_open)
        {
            return;
        }

        _open = false;
        if (_uncharged != 0)
        {
            _gpu.VirtualClock.Advance(_uncharged);
            _uncharged = 0;
        }

        _faults.Lock.Release();
        _space.Gate.Release();
        for (int kind = 0; kind < _raised.Length; kind++)
        {
            SimGpuMetrics.RecordFaults((DeviceAccessKind)kind, _raised[kind]);
            _raised[kind] = 0;
        }

        SimGpuMetrics.RecordDropped(_dropped);
        _dropped = 0;
        if (_logOverflow)
        {
            _logOverflow = false;
            _faults.LogOverflow();
        }
    }
}
