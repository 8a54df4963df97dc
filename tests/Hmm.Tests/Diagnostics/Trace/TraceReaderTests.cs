using System.Buffers.Binary;
using System.IO.Pipelines;
using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Diagnostics.Trace;

public class TraceReaderTests
{
    private const int Header = 64;
    private const int Record = 64;

    // A header, three event records and the end record: 320 bytes.
    private static byte[] SmallTrace() => TraceTestKit.WriteTrace(TraceTestKit.OneOfEachKind().Take(3));

    [Fact]
    public async Task TheHeaderSaysVersionAndStartTime()
    {
        DateTimeOffset before = DateTimeOffset.UtcNow;
        byte[] file = SmallTrace();
        await using var reader = new TraceReader(PipeReader.Create(new MemoryStream(file)));

        TraceHeader header = await reader.ReadHeaderAsync();

        header.FormatVersion.Should().Be(TraceHeader.CurrentVersion).And.Be(1);
        header.StartTime.Should().BeOnOrAfter(before.AddSeconds(-1)).And.BeOnOrBefore(DateTimeOffset.UtcNow);
        header.StartTime.Offset.Should().Be(TimeSpan.Zero);
        (await reader.ReadHeaderAsync()).Should().Be(header);
    }

    [Fact]
    public async Task AnEmptyFileIsRefusedAtOffsetZero()
    {
        TraceFormatException? failure = await TraceTestKit.ReadFailureAsync([]);

        failure.Should().NotBeNull();
        failure!.Offset.Should().Be(0);
        failure.Error.Should().Be(Errno.EINVAL);
        failure.Message.Should().Contain("empty");
    }

    [Fact]
    public async Task ATraceWithNoEventsIsValid()
    {
        byte[] file = TraceTestKit.WriteTrace([]);

        file.Should().HaveCount(Header + Record, "a header and the end record");
        (await TraceTestKit.ReadAllAsync(file)).Should().BeEmpty();
    }

    [Fact]
    public async Task ATruncationAtEveryByteIsRefusedNamingWhereTheFileStops()
    {
        byte[] file = SmallTrace();
        file.Should().HaveCount(Header + (4 * Record));

        for (int length = 0; length < file.Length; length++)
        {
            TraceFormatException? failure = await TraceTestKit.ReadFailureAsync(file[..length]);

            long expected = length < Header ? 0 : length - ((length - Header) % Record);
            failure.Should().NotBeNull($"a file cut to {length} of {file.Length} bytes must not read cleanly");
            failure!.Offset.Should().Be(expected, $"the file cut to {length} bytes: {failure.Message}");
        }

        (await TraceTestKit.ReadFailureAsync(file)).Should().BeNull();
    }

    [Theory]
    [InlineData(0x01)]
    [InlineData(0x80)]
    [InlineData(0xFF)]
    public async Task AFlippedByteAnywhereIsRefusedInsideItsHeaderOrRecord(byte flip)
    {
        byte[] file = SmallTrace();

        for (int position = 0; position < file.Length; position++)
        {
            byte[] corrupted = (byte[])file.Clone();
            corrupted[position] ^= flip;

            TraceFormatException? failure = await TraceTestKit.ReadFailureAsync(corrupted);

            int blockStart = position < Header ? 0 : position - ((position - Header) % Record);
            failure.Should().NotBeNull($"byte {position} xor 0x{flip:x2} must be detected");
            failure!.Offset.Should().BeInRange(blockStart, blockStart + 63, $"byte {position} was flipped: {failure.Message}");
        }
    }

    [Fact]
    public async Task AnotherFormatIsRefusedByItsMagicNumber()
    {
        byte[] file = SmallTrace();
        "NOTTRACE"u8.CopyTo(file);
        Reseal(file, 0);

        TraceFormatException failure = (await TraceTestKit.ReadFailureAsync(file))!;

        failure.Offset.Should().Be(0);
        failure.Message.Should().Contain("magic");
    }

    [Fact]
    public async Task ANewerFormatVersionIsRefusedByName()
    {
        byte[] file = SmallTrace();
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(8), 2);
        Reseal(file, 0);

        TraceFormatException failure = (await TraceTestKit.ReadFailureAsync(file))!;

        failure.Offset.Should().Be(8);
        failure.Message.Should().Contain("version 2");
    }

    [Theory]
    [InlineData(10, 32, 10)]
    [InlineData(12, 48, 12)]
    [InlineData(14, 1, 14)]
    [InlineData(40, 1, 40)]
    public async Task AHeaderFieldOutOfItsRangeIsRefusedAtThatField(int field, ushort value, long offset)
    {
        byte[] file = SmallTrace();
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(field), value);
        Reseal(file, 0);

        (await TraceTestKit.ReadFailureAsync(file))!.Offset.Should().Be(offset);
    }

    [Theory]
    [InlineData(0, 99, "kind 99")]
    [InlineData(0, 0, "kind 0")]
    [InlineData(2, 0x4, "flags")]
    [InlineData(6, 9, "engine")]
    [InlineData(7, 1, "reserved")]
    [InlineData(4, 1, "device")]
    [InlineData(48, 1, "payload word C")]
    public async Task ARecordFieldThatItsKindDoesNotAllowIsRefusedAtThatField(int field, ushort value, string reason)
    {
        // The first record is a CpuFault: no device, no flags, no payload word C.
        byte[] file = SmallTrace();
        if (field is 6 or 7)
        {
            file[Header + field] = (byte)value; // the one-byte engine and reserved fields
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(Header + field), value);
        }

        Reseal(file, Header);

        TraceFormatException failure = (await TraceTestKit.ReadFailureAsync(file))!;

        failure.Offset.Should().Be(Header + field);
        failure.Message.Should().Contain(reason);
    }

    [Theory]
    [InlineData(TraceEventKind.RunConfiguration, 4, 1, "device")]
    [InlineData(TraceEventKind.RunConfiguration, 40, 1, "payload word B")]
    [InlineData(TraceEventKind.Phase, 2, 1, "flags")]
    [InlineData(TraceEventKind.KernelLaunch, 12, 1, "arg")]
    [InlineData(TraceEventKind.DeviceAccess, 2, 0x8, "flags")]
    [InlineData(TraceEventKind.CpuAccess, 2, 0x2, "flags")]
    [InlineData(TraceEventKind.CpuAccess, 48, 1, "payload word C")]
    public async Task TheReplayKindsRefuseFieldsTheyDoNotUse(TraceEventKind kind, int field, ushort value, string reason)
    {
        byte[] file = TraceTestKit.WriteTrace(TraceTestKit.OneOfEachKind().Where(e => e.Kind == kind));
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(Header + field), (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(Header + field)) | value));
        Reseal(file, Header);

        TraceFormatException failure = (await TraceTestKit.ReadFailureAsync(file))!;

        failure.Offset.Should().Be(Header + field);
        failure.Message.Should().Contain(reason);
    }

    [Fact]
    public async Task SwappedRecordsAreRefusedByTheirSequenceNumbers()
    {
        byte[] file = SmallTrace();
        byte[] first = file[Header..(Header + Record)];
        file.AsSpan(Header + Record, Record).CopyTo(file.AsSpan(Header));
        first.CopyTo(file.AsSpan(Header + Record));

        TraceFormatException failure = (await TraceTestKit.ReadFailureAsync(file))!;

        failure.Offset.Should().Be(Header + 56);
        failure.Message.Should().Contain("sequence");
    }

    [Fact]
    public async Task DataAfterTheEndRecordIsRefused()
    {
        byte[] file = [.. SmallTrace(), .. SmallTrace()[Header..(Header + Record)]];

        TraceFormatException failure = (await TraceTestKit.ReadFailureAsync(file))!;

        failure.Offset.Should().Be(Header + (4 * Record));
        failure.Message.Should().Contain("follow the end record");
    }

    [Fact]
    public async Task AnEndRecordMiscountingTheRecordsIsRefused()
    {
        byte[] file = SmallTrace();
        int end = Header + (3 * Record);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(end + 32), 2);
        Reseal(file, end);

        TraceFormatException failure = (await TraceTestKit.ReadFailureAsync(file))!;

        failure.Offset.Should().Be(end + 32);
    }

    [Fact]
    public async Task AfterAFailureEveryReadThrowsTheSameException()
    {
        byte[] file = SmallTrace()[..100];
        await using var reader = new TraceReader(PipeReader.Create(new MemoryStream(file)));
        var batch = new TraceEvent[8];

        Func<Task> read = async () => await reader.ReadAsync(batch);

        TraceFormatException first = (await read.Should().ThrowAsync<TraceFormatException>()).Which;
        (await read.Should().ThrowAsync<TraceFormatException>()).Which.Should().BeSameAs(first);
    }

    [Fact]
    public async Task ReadingIntoNoRoomOrAfterDisposeIsRefused()
    {
        var reader = new TraceReader(PipeReader.Create(new MemoryStream(SmallTrace())));

        Func<Task> readNothing = async () => await reader.ReadAsync(Memory<TraceEvent>.Empty);
        (await readNothing.Should().ThrowAsync<HmmException>()).Which.Error.Should().Be(Errno.EINVAL);

        await reader.DisposeAsync();
        Func<Task> readAfterDispose = async () => await reader.ReadAsync(new TraceEvent[1]);
        (await readAfterDispose.Should().ThrowAsync<HmmException>()).Which.Error.Should().Be(Errno.EINVAL);
    }

    [Fact]
    public async Task TheEndOfTheTraceReadsAsZeroRecordsEveryTime()
    {
        await using var reader = new TraceReader(PipeReader.Create(new MemoryStream(SmallTrace())));
        var batch = new TraceEvent[8];

        (await reader.ReadAsync(batch)).Should().Be(3);
        (await reader.ReadAsync(batch)).Should().Be(0);
        (await reader.ReadAsync(batch)).Should().Be(0);
        reader.EventsRead.Should().Be(3);
    }

    // Recomputes the checksum of the 64-byte header or record at blockStart after a test changed its fields,
    // so that the field check, not the checksum, is what the reader trips on.
    private static void Reseal(byte[] file, int blockStart)
    {
        Span<byte> block = file.AsSpan(blockStart, 64);
        BinaryPrimitives.WriteUInt32LittleEndian(block[60..], TraceFormat.Checksum(block));
    }
}
