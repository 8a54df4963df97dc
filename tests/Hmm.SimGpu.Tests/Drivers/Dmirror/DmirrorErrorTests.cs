using FluentAssertions;
using Hmm.Drivers;
using Xunit;

namespace Hmm.SimGpu.Tests.Drivers.Dmirror;

/// <summary>Every documented error: returned state-dependent errors and thrown argument errors change nothing.</summary>
public sealed class DmirrorErrorTests
{
    private static readonly string[] s_allCommands = ["Read", "Write", "MigrateToDevice", "MigrateToSystem", "Snapshot", "Exclusive", "CheckExclusive", "Release"];

    public static TheoryData<string> Commands => new(s_allCommands);

    [Theory]
    [MemberData(nameof(Commands))]
    public async Task InvalidRangesThrowEinvalAndChangeNothing(string name)
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(4);
        byte[] data = machine.Fill(address, 4);
        (ulong Address, ulong Pages)[] invalid =
        [
            (address + 1, 1),                                // misaligned
            (address, 0),                                    // no pages
            (ulong.MaxValue & PageSize.Mask, 2),             // wraps
            (address, ulong.MaxValue),                       // wraps
        ];

        foreach ((ulong start, ulong pages) in invalid)
        {
            var command = new DmirrorCommand { Address = start, Pages = pages, CPages = 7, Faults = 8 };
            Action call = () => Run(machine.Mirror, name, ref command, pages is > 0 and < 16 ? (int)pages : 1);
            call.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
            command.CPages.Should().Be(7);
            command.Faults.Should().Be(8);
        }

        AssertUnchanged(machine, address, data);
        await machine.TeardownAsync();
    }

    [Theory]
    [InlineData("Read")]
    [InlineData("Write")]
    [InlineData("MigrateToDevice")]
    [InlineData("Snapshot")]
    [InlineData("Exclusive")]
    public async Task ABufferOfTheWrongLengthThrowsEinval(string name)
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(4);
        byte[] data = machine.Fill(address, 4);
        var command = new DmirrorCommand { Address = address, Pages = 4 };
        Action call = () => Run(machine.Mirror, name, ref command, 3);
        call.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        AssertUnchanged(machine, address, data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task UnknownFlagsAndUseAfterDisposeThrowEinval()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(1);
        Action unknown = () => machine.Mirror.SetFlags((DmirrorFlags)2);
        unknown.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        machine.Mirror.Flags.Should().Be(DmirrorFlags.None);

        Hmm.Drivers.Dmirror closed = machine.Device.Open(machine.Mm);
        closed.Dispose();
        closed.Dispose();   // a second close does nothing
        var command = new DmirrorCommand { Address = address, Pages = 1 };
        foreach (string name in s_allCommands)
        {
            Action call = () => Run(closed, name, ref command, 1);
            call.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        }

        Action flags = () => closed.SetFlags(DmirrorFlags.None);
        flags.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task NullArgumentsThrowArgumentNullException()
    {
        var machine = new DmirrorMachine();
        Action device = () => _ = new DmirrorDevice(null!);
        device.Should().Throw<ArgumentNullException>();
        Action open = () => machine.Device.Open(null!);
        open.Should().Throw<ArgumentNullException>();
        Action mmap = () => machine.Device.MmapDeviceFile(null!, 1);
        mmap.Should().Throw<ArgumentNullException>();
        Action zero = () => machine.Device.MmapDeviceFile(machine.Mm, 0);
        zero.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        machine.Mm.VmaCount.Should().Be(0);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task ASecondDriverOnTheSameDeviceIsRefused()
    {
        var machine = new DmirrorMachine();
        Action second = () => _ = new DmirrorDevice(machine.Gpu);
        second.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EBUSY);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task AnAddressSpaceOfAnotherMachineOrOneThatExitedIsRefused()
    {
        var machine = new DmirrorMachine();
        var foreign = new Mm(new PhysicalMemory(new PhysicalMemoryOptions { RamBytes = 2UL << 20 }));
        Action open = () => machine.Device.Open(foreign);
        open.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        Action mmap = () => machine.Device.MmapDeviceFile(foreign, 1);
        mmap.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);

        var exited = new Mm(machine.Memory, "exited");
        exited.Exit();
        Action openExited = () => machine.Device.Open(exited);
        openExited.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EINVAL);
        await machine.TeardownAsync();
    }

    [Theory]
    [InlineData("Read", Errno.EFAULT)]
    [InlineData("Write", Errno.EFAULT)]
    [InlineData("MigrateToDevice", Errno.EINVAL)]
    [InlineData("MigrateToSystem", Errno.EINVAL)]
    [InlineData("Exclusive", Errno.EFAULT)]
    public async Task ARangeWithAHoleInItsAreasFailsAndChangesNothing(string name, Errno expected)
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(4);
        byte[] data = machine.Fill(address, 4);
        machine.Mm.Munmap(address + (3 * (ulong)PageSize.Bytes), PageSize.Bytes);
        data = data[..(3 * PageSize.Bytes)];
        DmirrorSnapshot[] before = machine.Snapshot(address, 4);

        var command = new DmirrorCommand { Address = address, Pages = 4, CPages = 7, Faults = 8 };
        var buffer = new byte[4 * PageSize.Bytes];
        Array.Fill(buffer, (byte)0x5A);
        Run(machine.Mirror, name, ref command, 4, buffer).Should().Be(expected);
        command.CPages.Should().Be(7);
        command.Faults.Should().Be(8);
        buffer.Should().OnlyContain(b => b == 0x5A);
        machine.Snapshot(address, 4).Should().Equal(before);
        machine.CpuRead(address, 3).Should().Equal(data);
        machine.Device.PagesAllocated.Should().Be(0);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task AWriteToAReadOnlyAreaReturnsEpermAndChangesNothing()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(2);
        byte[] data = machine.Fill(address, 2);
        machine.Mm.Mprotect(address, 2 * (ulong)PageSize.Bytes, Protection.Read);

        var command = new DmirrorCommand { Address = address, Pages = 2, CPages = 7 };
        machine.Mirror.Write(ref command, DmirrorMachine.Pattern(2, 3)).Should().Be(Errno.EPERM);
        command.CPages.Should().Be(7);
        machine.CpuRead(address, 2).Should().Equal(data);

        var exclusive = new DmirrorCommand { Address = address, Pages = 2 };
        machine.Mirror.Exclusive(ref exclusive, new byte[2 * PageSize.Bytes]).Should().Be(Errno.EFAULT);
        machine.Snapshot(address, 2).Should().OnlyContain(s => s == DmirrorSnapshot.Read);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task AnAreaWithoutReadAccessCannotBeReadOrMigrated()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(2, Protection.None);
        var read = new DmirrorCommand { Address = address, Pages = 2 };
        machine.Mirror.Read(ref read, new byte[2 * PageSize.Bytes]).Should().Be(Errno.EFAULT);
        machine.MigrateToDevice(address, 2).Result.Should().Be(Errno.EINVAL);
        machine.Device.PagesAllocated.Should().Be(0);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task CommandsOnAnExitedProcessReturnEinval()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(2);
        machine.Mm.Exit();
        var command = new DmirrorCommand { Address = address, Pages = 2, CPages = 7 };
        foreach (string name in new[] { "Read", "Write", "MigrateToDevice", "MigrateToSystem", "Snapshot", "Exclusive" })
        {
            Run(machine.Mirror, name, ref command, 2).Should().Be(Errno.EINVAL, name);
            command.CPages.Should().Be(7);
        }

        machine.Mirror.Dispose();
        await machine.Gpu.Device.UnbindAsync();
    }

    [Fact]
    public async Task AFailedCopyToTheDeviceMovesNothingAndLosesNothing()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(4);
        byte[] data = machine.Fill(address, 4);
        machine.Gpu.Injection.FailNextCopies(1);

        (Errno result, DmirrorCommand command, _) = machine.MigrateToDevice(address, 4);
        result.Should().Be(Errno.ENOENT);
        command.CPages.Should().Be(0);
        machine.Snapshot(address, 4).Should().OnlyContain(s => s == DmirrorSnapshot.Write);
        machine.Device.PagesFreed.Should().Be(machine.Device.PagesAllocated, "the unused device pages went back");
        machine.CpuRead(address, 4).Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task AFailedCopyToSystemReturnsEioAndKeepsThePagesOnTheDevice()
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(4);
        byte[] data = machine.Fill(address, 4);
        machine.MigrateToDevice(address, 4).Result.Should().Be(Errno.None);
        machine.Gpu.Injection.FailNextCopies(1);

        var command = new DmirrorCommand { Address = address, Pages = 4, CPages = 7 };
        machine.Mirror.MigrateToSystem(ref command).Should().Be(Errno.EIO);
        command.CPages.Should().Be(7);
        machine.Snapshot(address, 4).Should().OnlyContain(s => s == (DmirrorSnapshot.DevicePrivateLocal | DmirrorSnapshot.Write));
        machine.CpuRead(address, 4).Should().Equal(data);
        await machine.TeardownAsync();
    }

    [Fact]
    public async Task WhenDeviceMemoryIsFullTheRestStaysInRamAndReadBackReturnsEnoent()
    {
        var machine = new DmirrorMachine();
        int capacity = (int)machine.Gpu.LocalMemory.CapacityPages;
        ulong address = machine.Map(capacity + 4);
        byte[] data = machine.Fill(address, capacity + 4);

        (Errno result, DmirrorCommand command, _) = machine.MigrateToDevice(address, capacity + 4);
        result.Should().Be(Errno.ENOENT);
        command.CPages.Should().Be(0);
        machine.Device.PagesAllocated.Should().Be(capacity);
        machine.CpuRead(address, capacity + 4).Should().Equal(data);
        await machine.TeardownAsync();
    }

    internal static Errno Run(Hmm.Drivers.Dmirror mirror, string name, ref DmirrorCommand command, int pages, byte[]? buffer = null)
    {
        buffer ??= new byte[pages * PageSize.Bytes];
        return name switch
        {
            "Read" => mirror.Read(ref command, buffer),
            "Write" => mirror.Write(ref command, buffer),
            "MigrateToDevice" => mirror.MigrateToDevice(ref command, buffer),
            "MigrateToSystem" => mirror.MigrateToSystem(ref command),
            "Snapshot" => mirror.Snapshot(ref command, buffer.AsSpan(0, pages)),
            "Exclusive" => mirror.Exclusive(ref command, buffer),
            "CheckExclusive" => mirror.CheckExclusive(ref command),
            "Release" => mirror.Release(ref command),
            _ => throw new ArgumentOutOfRangeException(nameof(name)),
        };
    }

    private static void AssertUnchanged(DmirrorMachine machine, ulong address, byte[] data)
    {
        machine.CpuRead(address, data.Length / PageSize.Bytes).Should().Equal(data);
        machine.Mirror.AddressSpace.MappedPages.Should().Be(0);
        machine.Device.PagesAllocated.Should().Be(0);
        machine.Snapshot(address, data.Length / PageSize.Bytes).Should().OnlyContain(s => s == DmirrorSnapshot.Write);
    }
}
