using System.Runtime.InteropServices;

namespace Hmm;

/// <summary>
/// One trace record: a fixed 64-byte, unmanaged value whose memory layout is the record layout of the trace
/// file (docs/trace-format.md, little-endian). The common fields say what happened (<see cref="Kind"/>), where
/// (<see cref="Engine"/>, <see cref="Device"/>, <see cref="ThreadId"/>) and when (<see cref="VirtualNs"/> on
/// the simulation's virtual clock, <see cref="WallTicks"/> on the wall clock); <see cref="Flags"/>,
/// <see cref="Arg"/>, <see cref="A"/>, <see cref="B"/> and <see cref="C"/> carry the payload, whose meaning
/// depends on the kind. Build events with the static factories (<see cref="CpuFault"/>, <see cref="Copy"/>,
/// ...) and read them back with the matching <c>As*</c> members; neither allocates nor boxes.
/// </summary>
/// <remarks>
/// <see cref="WallTicks"/> and <see cref="Sequence"/> are stamped by the <see cref="TraceWriter"/> when the
/// event is written; an event built by a factory has both zero.
/// </remarks>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public readonly partial record struct TraceEvent
{
    /// <summary>The size of one record in bytes, in memory and in the file.</summary>
    public const int Size = 64;

    [FieldOffset(0)] private readonly TraceEventKind _kind;
    [FieldOffset(2)] private readonly ushort _flags;
    [FieldOffset(4)] private readonly ushort _device;
    [FieldOffset(6)] private readonly TraceEngine _engine;
    [FieldOffset(7)] private readonly byte _reserved;
    [FieldOffset(8)] private readonly int _threadId;
    [FieldOffset(12)] private readonly uint _arg;
    [FieldOffset(16)] private readonly long _virtualNs;
    [FieldOffset(24)] private readonly long _wallTicks;
    [FieldOffset(32)] private readonly ulong _a;
    [FieldOffset(40)] private readonly ulong _b;
    [FieldOffset(48)] private readonly ulong _c;
    [FieldOffset(56)] private readonly uint _sequence;

    // Offset 60 holds the record checksum in the file. The reader verifies it and clears it, so an event in
    // memory always has it zero and two events compare equal when their fields do.
    [FieldOffset(60)] private readonly uint _checksum;

    private TraceEvent(
        TraceEventKind kind, TraceEngine engine, ushort device, ushort flags, uint arg, long virtualNs, ulong a, ulong b, ulong c)
    {
        _kind = kind;
        _engine = engine;
        _device = device;
        _flags = flags;
        _arg = arg;
        _virtualNs = virtualNs;
        _a = a;
        _b = b;
        _c = c;
        _threadId = Environment.CurrentManagedThreadId;
    }

    private TraceEvent(in TraceEvent source, uint sequence, long wallTicks)
    {
        this = source;
        _sequence = sequence;
        _wallTicks = wallTicks;
    }

    /// <summary>What the event records; says how to read the payload.</summary>
    public TraceEventKind Kind => _kind;

    /// <summary>Kind-specific flags (a <see cref="TraceDirection"/> or <see cref="TracePagemapChange"/>); bits the kind does not define are zero.</summary>
    public ushort Flags => _flags;

    /// <summary>The device the event concerns (its index, as the emitting layer numbers devices); 0 for kinds without a device.</summary>
    public ushort Device => _device;

    /// <summary>The agent the event happened on: a CPU thread or one of the device's engines.</summary>
    public TraceEngine Engine => _engine;

    /// <summary>The managed thread id of the thread that emitted the event.</summary>
    public int ThreadId => _threadId;

    /// <summary>A 32-bit payload field (an enum value, an errno, an engine or batch number), by kind.</summary>
    public uint Arg => _arg;

    /// <summary>When the event happened (or began) on the simulation's virtual clock, in nanoseconds.</summary>
    public long VirtualNs => _virtualNs;

    /// <summary>When the writer recorded the event: 100 ns ticks since the trace's start time (<see cref="TraceHeader.StartTime"/>).</summary>
    public long WallTicks => _wallTicks;

    /// <summary>The first 64-bit payload word, by kind (usually an address or page frame).</summary>
    public ulong A => _a;

    /// <summary>The second 64-bit payload word, by kind.</summary>
    public ulong B => _b;

    /// <summary>The third 64-bit payload word, by kind.</summary>
    public ulong C => _c;

    /// <summary>The record's position in its trace (0 for the first record), modulo 2^32; stamped by the writer.</summary>
    public uint Sequence => _sequence;

    /// <summary>The byte at offset 7, reserved: zero in every valid record.</summary>
    internal byte ReservedByte => _reserved;

    /// <summary>A copy stamped with the writer's sequence number and wall-clock ticks.</summary>
    internal TraceEvent Stamped(uint sequence, long wallTicks) => new(in this, sequence, wallTicks);
}
