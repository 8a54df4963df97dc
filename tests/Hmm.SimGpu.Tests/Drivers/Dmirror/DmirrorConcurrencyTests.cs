using FluentAssertions;
using Hmm.Drivers;
using Xunit;

namespace Hmm.SimGpu.Tests.Drivers.Dmirror;

/// <summary>
/// CPU writes, reads, munmap and mmap racing the device reads, migrations in both directions and releases of two
/// mirrors of the process, each on its own thread: the device never sees another page's bytes, no data is lost,
/// and nothing but the documented errors comes back.
/// </summary>
public sealed class DmirrorConcurrencyTests
{
    private const int Pages = 16;
    private const int Operations = 300;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task CpuAccessesAndMunmapRacingDeviceReadsMigrationsAndReleasesLoseNothing(int seed)
    {
        var machine = new DmirrorMachine();
        ulong address = machine.Map(Pages);
        ulong length = Pages * (ulong)PageSize.Bytes;
        var model = new byte[Pages];            // the value every byte of each page holds; written by the CPU thread only
        var versions = new int[Pages];
        Exception? failure = null;

        void Cpu()
        {
            var random = new Random(seed);
            var page = new byte[PageSize.Bytes];
            for (int op = 0; op < Operations; op++)
            {
                int index = random.Next(Pages);
                ulong at = address + ((ulong)index * (ulong)PageSize.Bytes);
                int action = random.Next(8);
                if (action == 1)
                {
                    // A CPU read: faults a device page back (migrate_to_ram) and must see the last write.
                    machine.Mm.Read(at, page);
                    byte expected = Volatile.Read(ref model[index]);
                    if (Array.Exists(page, b => b != expected))
                    {
                        throw new InvalidOperationException($"seed {seed}: the CPU read page {index} without its last write 0x{expected:x2}.");
                    }

                    continue;
                }

                if (action == 0)
                {
                    machine.Mm.Munmap(at, PageSize.Bytes);
                    machine.Mm.Mmap(at, PageSize.Bytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.Fixed);
                    Volatile.Write(ref model[index], 0);
                    continue;
                }

                // The high nibble names the page, so a device read of another page's bytes is caught.
                versions[index] = (versions[index] % 15) + 1;
                byte value = (byte)((index << 4) | versions[index]);
                Array.Fill(page, value);
                machine.Mm.Write(at, page);
                Volatile.Write(ref model[index], value);
            }
        }

        void Device(Hmm.Drivers.Dmirror mirror, int stream)
        {
            var random = new Random((seed * 7919) + stream);
            var buffer = new byte[Pages * PageSize.Bytes];
            for (int op = 0; op < Operations; op++)
            {
                int first = random.Next(Pages);
                int count = 1 + random.Next(Pages - first);
                var command = new DmirrorCommand { Address = address + ((ulong)first * (ulong)PageSize.Bytes), Pages = (ulong)count };
                Span<byte> data = buffer.AsSpan(0, count * PageSize.Bytes);
                int kind = random.Next(9);
                Errno result = kind switch
                {
                    0 or 5 => mirror.Read(ref command, data),
                    1 or 6 => mirror.MigrateToDevice(ref command, data),
                    2 or 7 => mirror.MigrateToSystem(ref command),
                    3 => mirror.Release(ref command),
                    _ => mirror.Snapshot(ref command, data[..count]),
                };
                result.Should().BeOneOf([Errno.None, Errno.EFAULT, Errno.EINVAL, Errno.ENOENT, Errno.EBUSY], $"seed {seed}, operation {op}");
                if (result == Errno.None && kind is 0 or 1 or 5 or 6)     // a read or a migration returns the device's view
                {
                    for (int i = 0; i < data.Length; i++)
                    {
                        int page = first + (i / PageSize.Bytes);
                        if (data[i] != 0 && data[i] >> 4 != page)
                        {
                            throw new InvalidOperationException($"seed {seed}: the device read byte 0x{data[i]:x2} of another page in page {page}.");
                        }
                    }
                }
            }
        }

        Task cpu = Task.Factory.StartNew(Guard(Cpu), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        using Hmm.Drivers.Dmirror second = machine.Device.Open(machine.Mm);
        Task device = Task.Factory.StartNew(Guard(() => Device(machine.Mirror, 0)), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Task other = Task.Factory.StartNew(Guard(() => Device(second, 1)), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        await Task.WhenAll(cpu, device, other);
        failure.Should().BeNull($"seed {seed}: {failure}");

        byte[] final = machine.CpuRead(address, Pages);
        for (int page = 0; page < Pages; page++)
        {
            final.AsSpan(page * PageSize.Bytes, PageSize.Bytes).ToArray().Should().OnlyContain(b => b == model[page], $"seed {seed}: page {page} keeps the CPU's last write");
        }

        machine.Mm.Munmap(address, length);
        second.Dispose();
        await machine.TeardownAsync();
        machine.Device.PagesFreed.Should().Be(machine.Device.PagesAllocated, $"seed {seed}: every device page came back");

        Action Guard(Action body) => () =>
        {
            try
            {
                body();
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref failure, e, null);
            }
        };
    }
}
