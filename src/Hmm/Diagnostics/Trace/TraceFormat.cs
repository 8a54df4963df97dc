using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Hmm;

/// <summary>
/// The trace file layout shared by <see cref="TraceWriter"/> and <see cref="TraceReader"/>: header fields, the
/// checksum, and what each kind may carry. docs/trace-format.md is the specification; this is its code.
/// </summary>
internal static class TraceFormat
{
    public const ushort Version = 1;
    public const int HeaderSize = 64;
    public const int RecordSize = TraceEvent.Size;
    public const int ChecksumOffset = 60;

    // The kind of the end record the writer appends when it is disposed; not a TraceEventKind, never returned
    // to a reader's caller. Its payload word A is the number of event records before it.
    public const ushort EndKind = 0xFFFF;

    // "HMMTRACE" read as a little-endian 64-bit integer.
    public const ulong Magic = 0x4543_4152_544D_4D48;

    private const int ReservedOffset = 7;
    private const int DeviceOffset = 4;
    private const int FlagsOffset = 2;
    private const int EngineOffset = 6;
    private const int ArgOffset = 12;
    private const int AOffset = 32;
    private const int BOffset = 40;
    private const int COffset = 48;

    [Flags]
    private enum Uses : byte
    {
        None = 0,
        Device = 1,
        Arg = 2,
        A = 4,
        B = 8,
        C = 16,
    }

    private readonly record struct KindLayout(Uses Uses, ushort FlagsMask);

    // Indexed by kind; entry 0 (None) is never valid.
    private static readonly KindLayout[] s_layouts =
    [
        default,
        new(Uses.Arg | Uses.A | Uses.B, 0), // CpuFault
        new(Uses.Device | Uses.Arg | Uses.A, 0), // DeviceFault
        new(Uses.Device | Uses.Arg | Uses.A | Uses.B | Uses.C, 0), // FaultBatch
        new(Uses.Device | Uses.Arg | Uses.A | Uses.B | Uses.C, 0), // RangeFault
        new(Uses.Arg | Uses.A | Uses.B | Uses.C, 0), // Invalidate
        new(Uses.Device | Uses.Arg | Uses.A | Uses.B | Uses.C, 0x3), // MigrateSetup
        new(Uses.Device | Uses.A | Uses.B | Uses.C, 0x3), // MigratePages
        new(Uses.Device | Uses.A | Uses.B | Uses.C, 0x3), // MigrateFinalize
        new(Uses.Device | Uses.Arg | Uses.A | Uses.B, 0x3), // Copy
        new(Uses.Device | Uses.A | Uses.B, 0), // Evict
        new(Uses.Device | Uses.A | Uses.B, 0), // TlbInvalidate
        new(Uses.Device | Uses.A | Uses.B | Uses.C, 0), // DeviceAlloc
        new(Uses.Device | Uses.A | Uses.B | Uses.C, 0), // DeviceFree
        new(Uses.Device | Uses.A | Uses.B, 0x3), // PagemapLifetime
        new(Uses.Arg | Uses.A, 0), // RunConfiguration
        new(Uses.Arg | Uses.A, 0), // Phase
        new(Uses.Device | Uses.A | Uses.B | Uses.C, 0), // KernelLaunch
        new(Uses.Device | Uses.Arg | Uses.A | Uses.B | Uses.C, 0x7), // DeviceAccess
        new(Uses.A | Uses.B, 0x1), // CpuAccess
    ];

    public static int KindCount => s_layouts.Length;

    /// <summary>
    /// A 32-bit checksum of bytes [0, 60) of a header or record, taken as 15 little-endian words. Each step
    /// (xor, then multiply by an odd constant) is a bijection of the running value, so changing any one word,
    /// and so any one byte, always changes the result.
    /// </summary>
    public static uint Checksum(ReadOnlySpan<byte> block)
    {
        uint hash = 2166136261;
        for (int offset = 0; offset < ChecksumOffset; offset += sizeof(uint))
        {
            hash = (hash ^ BinaryPrimitives.ReadUInt32LittleEndian(block[offset..])) * 16777619;
        }

        return hash;
    }

    /// <summary>Fills <paramref name="record"/> with the end record that follows <paramref name="events"/> event records.</summary>
    public static void WriteEnd(Span<byte> record, long events, long wallTicks)
    {
        record[..RecordSize].Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(record, EndKind);
        BinaryPrimitives.WriteInt64LittleEndian(record[24..], wallTicks);
        BinaryPrimitives.WriteUInt64LittleEndian(record[AOffset..], (ulong)events);
        BinaryPrimitives.WriteUInt32LittleEndian(record[56..], (uint)events);
        BinaryPrimitives.WriteUInt32LittleEndian(record[ChecksumOffset..], Checksum(record));
    }

    /// <summary>Whether a record (already checksum-validated) is the end record.</summary>
    public static bool IsEnd(ReadOnlySpan<byte> record) => BinaryPrimitives.ReadUInt16LittleEndian(record) == EndKind;

    /// <summary>Validates an end record that follows <paramref name="events"/> event records; null when valid.</summary>
    public static string? ValidateEnd(ReadOnlySpan<byte> record, long events, out int fieldOffset)
    {
        fieldOffset = AOffset;
        if (BinaryPrimitives.ReadUInt64LittleEndian(record[AOffset..]) != (ulong)events)
        {
            return $"the end record counts {BinaryPrimitives.ReadUInt64LittleEndian(record[AOffset..])} records, but {events} precede it";
        }

        fieldOffset = 56;
        if (BinaryPrimitives.ReadUInt32LittleEndian(record[56..]) != (uint)events)
        {
            return "the end record's sequence number does not follow the last record's";
        }

        // Bytes 2-23 and 40-55 of the end record are reserved (24-31 are the wall-clock ticks).
        int reserved = record[2..24].IndexOfAnyExcept((byte)0);
        if (reserved < 0)
        {
            reserved = record[BOffset..56].IndexOfAnyExcept((byte)0);
            fieldOffset = reserved < 0 ? 0 : BOffset + reserved;
        }
        else
        {
            fieldOffset = 2 + reserved;
        }

        return reserved < 0 ? null : "reserved bytes of the end record must be zero";
    }

    public static void WriteHeader(Span<byte> header, DateTimeOffset startTime)
    {
        header[..HeaderSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(header[8..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(header[10..], HeaderSize);
        BinaryPrimitives.WriteUInt16LittleEndian(header[12..], RecordSize);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], startTime.UtcTicks);
        BinaryPrimitives.WriteUInt32LittleEndian(header[ChecksumOffset..], Checksum(header));
    }

    /// <summary>Parses and validates a header; on failure returns null and the offset and reason of the first fault.</summary>
    public static TraceHeader? ReadHeader(ReadOnlySpan<byte> header, out long faultOffset, out string? reason)
    {
        faultOffset = 0;
        reason = null;
        if (BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic)
        {
            reason = "not a trace file: the magic number is not \"HMMTRACE\"";
            return null;
        }

        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(header[8..]);
        ushort headerSize = BinaryPrimitives.ReadUInt16LittleEndian(header[10..]);
        ushort recordSize = BinaryPrimitives.ReadUInt16LittleEndian(header[12..]);
        ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(header[14..]);
        long startTicks = BinaryPrimitives.ReadInt64LittleEndian(header[16..]);
        (faultOffset, reason) = (version, headerSize, recordSize, flags) switch
        {
            _ when version != Version => (8L, $"format version {version} is not supported (this reader reads version {Version})"),
            _ when headerSize != HeaderSize => (10L, $"header size {headerSize} is not {HeaderSize}"),
            _ when recordSize != RecordSize => (12L, $"record size {recordSize} is not {RecordSize}"),
            _ when flags != 0 => (14L, $"header flags 0x{flags:x} are reserved and must be zero"),
            _ when startTicks < DateTimeOffset.MinValue.UtcTicks || startTicks > DateTimeOffset.MaxValue.UtcTicks =>
                (16L, $"start time {startTicks} is not a valid time"),
            _ when header[24..ChecksumOffset].ContainsAnyExcept((byte)0) => (24L + header[24..ChecksumOffset].IndexOfAnyExcept((byte)0), "reserved header bytes must be zero"),
            _ when Checksum(header) != BinaryPrimitives.ReadUInt32LittleEndian(header[ChecksumOffset..]) => (ChecksumOffset, "header checksum mismatch: the header is corrupted"),
            _ => (0L, null),
        };

        return reason is null ? new TraceHeader(version, new DateTimeOffset(startTicks, TimeSpan.Zero)) : null;
    }

    /// <summary>
    /// Validates one record against the layout of its kind and the expected sequence number; returns null when
    /// valid, else the reason, with the offset of the offending field within the record.
    /// </summary>
    public static string? ValidateRecord(ReadOnlySpan<byte> record, uint expectedSequence, out int fieldOffset)
    {
        if (ValidateRecordChecksum(record, out fieldOffset) is { } reason)
        {
            return reason;
        }

        ref readonly TraceEvent e = ref MemoryMarshal.AsRef<TraceEvent>(record);
        return ValidateFields(in e, expectedSequence, out fieldOffset);
    }

    /// <summary>Checks a record's checksum; null when it matches.</summary>
    public static string? ValidateRecordChecksum(ReadOnlySpan<byte> record, out int fieldOffset)
    {
        fieldOffset = ChecksumOffset;
        return Checksum(record) == BinaryPrimitives.ReadUInt32LittleEndian(record[ChecksumOffset..])
            ? null
            : "record checksum mismatch: the record is corrupted";
    }

    /// <summary>Validates an event's fields (not its checksum); used for records read and events written.</summary>
    public static string? ValidateFields(in TraceEvent e, uint expectedSequence, out int fieldOffset)
    {
        fieldOffset = 0;
        if (e.Kind == TraceEventKind.None || (int)e.Kind >= s_layouts.Length)
        {
            return $"kind {(ushort)e.Kind} is not a known event kind (1 to {s_layouts.Length - 1})";
        }

        KindLayout layout = s_layouts[(int)e.Kind];
        (fieldOffset, string? reason) = e switch
        {
            _ when (e.Flags & ~layout.FlagsMask) != 0 => (FlagsOffset, $"flags 0x{e.Flags:x} set bits that a {e.Kind} record does not define"),
            _ when (uint)e.Engine > (uint)TraceEngine.Compute => (EngineOffset, $"engine {(byte)e.Engine} is not a known engine"),
            _ when e.ReservedByte != 0 => (ReservedOffset, "the reserved byte must be zero"),
            _ when (layout.Uses & Uses.Device) == 0 && e.Device != 0 => (DeviceOffset, $"a {e.Kind} record has no device, but the device field is {e.Device}"),
            _ when (layout.Uses & Uses.Arg) == 0 && e.Arg != 0 => (ArgOffset, $"a {e.Kind} record does not use the arg field, but it is {e.Arg}"),
            _ when (layout.Uses & Uses.A) == 0 && e.A != 0 => (AOffset, $"a {e.Kind} record does not use payload word A, but it is {e.A}"),
            _ when (layout.Uses & Uses.B) == 0 && e.B != 0 => (BOffset, $"a {e.Kind} record does not use payload word B, but it is {e.B}"),
            _ when (layout.Uses & Uses.C) == 0 && e.C != 0 => (COffset, $"a {e.Kind} record does not use payload word C, but it is {e.C}"),
            _ when e.Sequence != expectedSequence => (56, $"sequence number {e.Sequence} where {expectedSequence} was expected: records are missing, repeated or out of order"),
            _ => (0, null),
        };

        return reason;
    }
}
