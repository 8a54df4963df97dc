using System.Numerics;
using System.Runtime.CompilerServices;
using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>
/// The simulated GPU's replayable fault buffer (<see cref="IFaultSource"/>): a ring of fault records, and a small
/// open-addressing table that merges duplicates (same address space, page and access kind) within one fetched
/// batch. Neither pushing nor fetching allocates.
/// </summary>
/// <remarks>
/// Concurrency model: <c>_lock</c> guards the ring, the merge table, the overflow flag and the device's
/// FaultsRaised and FaultBufferOverflows counters. Taken after an address space's gate by an access raising a
/// fault, or held with it across a <see cref="SimAccessRun"/>; nothing is called under it but the trace. Accesses through different address spaces of one device push concurrently
/// (their gates are distinct), so pushing keeps its own lock.
/// </remarks>
internal sealed class SimFaultBuffer : IFaultSource
{
    private readonly SimulatedGpu _gpu;
    // Guards _ring, _head, _count, the merge table (_slots, _stamps, _generation) and _overflowing. Taken after an
    // address space's gate (an access raising a fault); nothing is called while it is held.
    private readonly SpinGate _lock = new();
    private readonly DeviceFault[] _ring;
    private readonly int[] _slots;
    private readonly int[] _stamps;
    private readonly int _tableMask;
    private int _head;
    private int _count;
    private int _generation;
    private bool _overflowing;

    internal SimFaultBuffer(SimulatedGpu gpu, int entries, int batchSize)
    {
        _gpu = gpu;
        _ring = new DeviceFault[entries];
        BatchSize = batchSize;
        int tableSize = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(2, 2 * batchSize));
        _slots = new int[tableSize];
        _stamps = new int[tableSize];
        _tableMask = tableSize - 1;
    }

    /// <inheritdoc/>
    public int Pending => Volatile.Read(ref _count);

    /// <inheritdoc/>
    public int BatchSize { get; }

    /// <summary>
    /// The lock that guards the ring; held across a whole <see cref="SimAccessRun"/>, which pushes with
    /// <see cref="PushLocked"/>.
    /// </summary>
    internal SpinGate Lock => _lock;

    /// <summary>Records a fault; a full buffer drops it and counts an overflow.</summary>
    internal void Push(in DeviceFault fault)
    {
        PushOutcome outcome;
        using (_lock.Enter())
        {
            outcome = PushLocked(fault);
        }

        // Recorded outside the lock: a listener's callback must not run under it.
        SimGpuMetrics.RecordFaults(fault.Access, 1);
        SimGpuMetrics.RecordDropped(outcome == PushOutcome.Queued ? 0 : 1);
        if (outcome == PushOutcome.DroppedFirst)
        {
            LogOverflow();
        }
    }

    /// <summary>
    /// Records a fault under <see cref="Lock"/>, which the caller holds; a full buffer drops it and counts an
    /// overflow. The caller records the metrics and logs the first overflow (<see cref="LogOverflow"/>) after
    /// leaving the lock.
    /// </summary>
    internal PushOutcome PushLocked(in DeviceFault fault)
    {
        // Only pushes write these two counters, always under the lock: no atomic needed.
        SimGpuCounters counters = _gpu.Counters;
        counters.FaultsRaised++;
        if (_count < _ring.Length)
        {
            int tail = _head + _count;
            _ring[tail >= _ring.Length ? tail - _ring.Length : tail] = fault;
            _count++;

            // Under the lock, so the fault unit's events are in the order the faults entered the buffer.
            TraceEmitter trace = _gpu.Memory.Trace;
            if (trace.IsEnabled)
            {
                trace.Emit(TraceEvent.DeviceFault(_gpu.TraceDevice, fault.Address, (TraceDeviceAccess)fault.Access, fault.Timestamp));
            }

            return PushOutcome.Queued;
        }

        counters.FaultBufferOverflows++;
        bool first = !_overflowing;
        _overflowing = true;
        return first ? PushOutcome.DroppedFirst : PushOutcome.Dropped;
    }

    /// <summary>Logs that the buffer overflowed; once per overflow episode, outside the lock.</summary>
    internal void LogOverflow() => Log.FaultBufferOverflow(_gpu.Logger, _gpu.Name, _ring.Length, null);

    /// <inheritdoc/>
    public FaultBatchInfo FetchBatch(Span<DeviceFault> faults)
    {
        if (faults.IsEmpty)
        {
            throw new HmmException(Errno.EINVAL, "A fault batch needs at least one destination slot.");
        }

        int count = 0;
        int merged = 0;
        int fetched = 0;
        using (_lock.Enter())
        {
            if (++_generation == 0)
            {
                // Stamps from 2^32 batches ago could match again: start over.
                Array.Clear(_stamps);
                _generation = 1;
            }

            while (fetched < BatchSize && _count > 0)
            {
                ref DeviceFault record = ref _ring[_head];
                int slot = (int)Hash(record) & _tableMask;
                bool duplicate = false;
                while (_stamps[slot] == _generation)
                {
                    ref DeviceFault seen = ref faults[_slots[slot]];
                    if (ReferenceEquals(seen.Space, record.Space) && seen.Address == record.Address && seen.Access == record.Access)
                    {
                        duplicate = true;
                        break;
                    }

                    slot = (slot + 1) & _tableMask;
                }

                if (duplicate)
                {
                    merged++;
                }
                else
                {
                    if (count == faults.Length)
                    {
                        break;
                    }

                    faults[count] = record;
                    _stamps[slot] = _generation;
                    _slots[slot] = count;
                    count++;
                }

                record = default;
                _head = _head + 1 == _ring.Length ? 0 : _head + 1;
                _count--;
                fetched++;
            }

            _overflowing = false;
        }

        if (fetched > 0)
        {
            Interlocked.Increment(ref _gpu.Counters.BatchesFetched);
            Interlocked.Add(ref _gpu.Counters.FaultsFetched, fetched);
            Interlocked.Add(ref _gpu.Counters.DuplicatesMerged, merged);
        }

        return new FaultBatchInfo(count, merged, fetched);
    }

    /// <inheritdoc/>
    public void Replay()
    {
        Interlocked.Increment(ref _gpu.Counters.Replays);
        _gpu.VirtualClock.Advance(_gpu.Costs.ReplayLatency);
    }

    private static uint Hash(in DeviceFault fault)
    {
        ulong key = (fault.Address >> PageSize.Shift) ^ ((ulong)(uint)RuntimeHelpers.GetHashCode(fault.Space) << 32) ^ (ulong)fault.Access;
        return (uint)((key * 0x9E3779B97F4A7C15UL) >> 32);
    }

    /// <summary>What <see cref="PushLocked"/> did with a fault.</summary>
    internal enum PushOutcome
    {
        /// <summary>The fault is in the ring.</summary>
        Queued,

        /// <summary>The ring was full: the fault was dropped and counted, in an overflow already logged.</summary>
        Dropped,

        /// <summary>The ring was full and this drop starts an overflow episode, which the caller logs.</summary>
        DroppedFirst,
    }
}
