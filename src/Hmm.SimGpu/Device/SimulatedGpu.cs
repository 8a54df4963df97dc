using Hmm.Devices;
using Microsoft.Extensions.Logging;

namespace Hmm.SimGpu;

/// <summary>
/// A simulated GPU (<see cref="IDeviceBackend"/>): device memory in chunks whose pages are core struct pages of
/// device pagemaps, a copy engine, device page tables, a replayable fault buffer, all charged on a virtual clock
/// by a cost model. Several GPUs on one machine share one <see cref="VirtualClock"/>; a page of another GPU's
/// memory is a remote device page to this one.
/// </summary>
/// <remarks>
/// <para>The constructor claims the device's physical region (<see cref="Devm.RequestFreeRegion"/>) and attaches
/// one release action that tears down every pagemap the memory registers later, as it needs them. Unbinding
/// <see cref="Device"/> (<see cref="ManagedDevice.UnbindAsync"/>) therefore runs the drivers' actions (attached
/// after the device was created: eviction) first, then that teardown, which waits until every device page is free.</para>
/// <para>Error model: invalid arguments throw <see cref="HmmException"/> EINVAL (<see cref="ArgumentNullException"/>
/// for null) before anything changes; device-side failures (no free device page, a failed copy) are returned.</para>
/// <para>Concurrency model: every member is thread-safe; each component documents its lock, and locks are only
/// taken in the order address-space gate, then fault buffer.</para>
/// </remarks>
public sealed class SimulatedGpu : IDeviceBackend
{
    private readonly SimDeviceMemory _localMemory;
    private readonly SimFaultBuffer _faults;
    private readonly SimCopyEngine _copyEngine;

    /// <summary>Creates a GPU attached to <paramref name="memory"/>, bound, with empty memory.</summary>
    /// <param name="memory">The machine.</param>
    /// <param name="name">The device name (its <see cref="ManagedDevice"/>'s).</param>
    /// <param name="options">Its shape and costs; null for the defaults.</param>
    /// <param name="clock">The simulation's clock, shared by its devices; null for a new one.</param>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> or <paramref name="name"/> is null.</exception>
    /// <exception cref="HmmException">
    /// EINVAL: an option is out of range (see <see cref="SimGpuOptions"/>); ENOMEM: no free physical region as large
    /// as the device memory. Nothing is created.
    /// </exception>
    public SimulatedGpu(PhysicalMemory memory, string name, SimGpuOptions? options = null, VirtualClock? clock = null)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(name);
        options ??= new SimGpuOptions();
        options.Validate();
        Memory = memory;
        Name = name;
        Options = options;
        Costs = options.Costs;
        Logger = options.Logger;
        VirtualClock = clock ?? new VirtualClock();

        // The machine's core layers stamp their trace events with the first device's clock (devices share one).
        VirtualClock sharedClock = VirtualClock;
        memory.Trace.UseVirtualClock(() => sharedClock.Now);
        Timing = new DeviceTiming(Costs.FarFaultLatency, Costs.CpuFaultLatency, Costs.TlbInvalidateLatency);
        Device = new ManagedDevice(memory, name);
        PhysicalRange region = Devm.RequestFreeRegion(Device, (ulong)options.MemoryBytes);
        _localMemory = new SimDeviceMemory(this, options, region);
        Device.AddActionOrReset(_localMemory.TeardownAsync);
        _faults = new SimFaultBuffer(this, options.FaultBufferEntries, options.FaultBatchSize);
        _copyEngine = new SimCopyEngine(this);
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public PhysicalMemory Memory { get; }

    /// <inheritdoc/>
    public ManagedDevice Device { get; }

    /// <inheritdoc/>
    public IDeviceMemory LocalMemory => _localMemory;

    /// <inheritdoc/>
    public ICopyEngine CopyEngine => _copyEngine;

    /// <inheritdoc/>
    public IFaultSource Faults => _faults;

    /// <inheritdoc/>
    public IVirtualClock Clock => VirtualClock;

    /// <summary>The clock, as its concrete type (to share it with another <see cref="SimulatedGpu"/>).</summary>
    public VirtualClock VirtualClock { get; }

    /// <inheritdoc/>
    public DeviceTiming Timing { get; }

    /// <summary>The options the device was created with.</summary>
    public SimGpuOptions Options { get; }

    /// <summary>Fault injection for tests.</summary>
    public SimGpuFaultInjection Injection { get; } = new();

    /// <summary>
    /// A snapshot of the device's counters: one atomic read per counter, plus one read per address space for the
    /// access counters. Exact for every call that has returned; a call still in flight may or may not be counted.
    /// </summary>
    public SimGpuStatistics Statistics => Counters.Snapshot();

    /// <summary>The cost model, from <see cref="Options"/>.</summary>
    internal SimGpuCostModel Costs { get; }

    internal ILogger Logger { get; }

    internal SimGpuCounters Counters { get; } = new();

    /// <summary>The device's number in trace events (<see cref="ManagedDevice.TraceId"/>).</summary>
    internal ushort TraceDevice => Device.TraceId;

    /// <inheritdoc/>
    public IDeviceAddressSpace CreateAddressSpace(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var space = new SimAddressSpace(this, name);
        Counters.Register(space.AccessCounters);
        return space;
    }

    /// <inheritdoc/>
    public DeviceAccessResult Access(IDeviceAddressSpace space, ulong address, ulong length, DeviceAccessKind kind, Span<byte> data, int engine, bool replayable)
    {
        ArgumentNullException.ThrowIfNull(space);
        if (space is not SimAddressSpace own || !ReferenceEquals(own.Device, this))
        {
            throw new HmmException(Errno.EINVAL, $"Address space '{space.Name}' belongs to another device than '{Name}'.");
        }

        if (length == 0 || length - 1 > ulong.MaxValue - address)
        {
            throw new HmmException(Errno.EINVAL, $"Device access 0x{address:x}+0x{length:x} is empty or wraps.");
        }

        if (kind is not (DeviceAccessKind.Read or DeviceAccessKind.Write or DeviceAccessKind.Atomic))
        {
            throw new HmmException(Errno.EINVAL, $"Device access kind {kind} is not valid.");
        }

        if (engine < 0)
        {
            throw new HmmException(Errno.EINVAL, $"Engine {engine} is negative.");
        }

        if (!data.IsEmpty && ((ulong)data.Length != length || !Memory.StoresPageData))
        {
            throw new HmmException(Errno.EINVAL, Memory.StoresPageData
                ? $"Device access of {length} bytes with a buffer of {data.Length} bytes."
                : "A metadata-only machine has no bytes: a device access takes no buffer.");
        }

        using (own.Gate.Enter())
        {
            DeviceAccessResult result = AccessLocked(own, address, length, kind, data, out long localBytes, out long remoteBytes);

            // An access that moved no byte (it stopped at its first page) charges nothing: read the clock instead of
            // an atomic add of 0.
            long now = result.BytesDone == 0 ? VirtualClock.Now : VirtualClock.Advance(Costs.AccessTime(localBytes, remoteBytes));
            if (!result.Completed && replayable)
            {
                _faults.Push(new DeviceFault(space, result.FaultAddress, kind, engine, now));
            }

            return result;
        }
    }

    /// <summary>Starts the runs of accesses through <paramref name="space"/> a kernel executor makes.</summary>
    internal SimAccessRun CreateAccessRun(SimAddressSpace space) => new(this, space, _faults);

    /// <summary>
    /// The body of an access, under <paramref name="own"/>'s gate, which the caller holds: walks the pages until one
    /// lacks the permission <paramref name="kind"/> needs, moves the bytes, counts the access, and returns what it
    /// did and the bytes it moved in local and in remote memory, whose time (<see cref="SimGpuCostModel.AccessTime"/>)
    /// the caller charges (and a fault, which it raises).
    /// </summary>
    internal DeviceAccessResult AccessLocked(
        SimAddressSpace own, ulong address, ulong length, DeviceAccessKind kind, Span<byte> data, out long localBytes, out long remoteBytes)
    {
        DevicePteFlags needed = kind switch
        {
            DeviceAccessKind.Read => DevicePteFlags.Read | DevicePteFlags.Write | DevicePteFlags.Atomic,
            DeviceAccessKind.Write => DevicePteFlags.Write,
            _ => DevicePteFlags.Atomic,
        };

        ulong done = 0;
        localBytes = 0;
        remoteBytes = 0;
        bool stopped = false;
        ulong faultAddress = 0;
        while (done < length)
        {
            ulong current = address + done;
            int offset = (int)(current & (PageSize.Bytes - 1));
            int bytes = (int)Math.Min((ulong)(PageSize.Bytes - offset), length - done);
            ulong entry = own.Table.Get(current >> PageSize.Shift);
            if (((DevicePteFlags)(entry & DevicePageTable.FlagMask) & needed) == 0)
            {
                stopped = true;
                faultAddress = current & PageSize.Mask;
                break;
            }

            var pfn = new Pfn(entry >> DevicePageTable.FlagBits);
            if (!data.IsEmpty)
            {
                Span<byte> buffer = data.Slice((int)done, bytes);
                if (kind == DeviceAccessKind.Read)
                {
                    Memory.ReadPageData(pfn).Slice(offset, bytes).CopyTo(buffer);
                }
                else
                {
                    buffer.CopyTo(Memory.PageData(pfn).Slice(offset, bytes));
                }
            }

            if (_localMemory.Contains(pfn))
            {
                localBytes += bytes;
            }
            else
            {
                remoteBytes += bytes;
            }

            done += (ulong)bytes;
        }

        // The gate is held: the space's counters need no atomics.
        SimAccessCounters counters = own.AccessCounters;
        counters.Accesses++;
        counters.BytesAccessed += (long)done;
        if (stopped)
        {
            counters.AccessesStopped++;
        }

        return new DeviceAccessResult(done, faultAddress, !stopped);
    }

    /// <inheritdoc/>
    public override string ToString() => $"simulated GPU '{Name}'";
}
