using FluentAssertions;
using Hmm.Devices;
using Xunit;
using static Hmm.SimGpu.Tests.Device.DeviceTestKit;

namespace Hmm.SimGpu.Tests.Device;

public sealed class DeviceMemoryTests
{
    [Fact]
    public void AllocatedPagesAreLockedWithOneReferenceAndContiguousInOneChunk()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        var pages = new Pfn[5];

        gpu.LocalMemory.Allocate(pages).Should().Be(5);

        for (int i = 0; i < pages.Length; i++)
        {
            machine.Page(pages[i]).RefCount.Should().Be(1);
            machine.Page(pages[i]).IsLocked.Should().BeTrue();
            pages[i].Should().Be(pages[0] + (ulong)i, "pages of one allocation are ascending within a chunk");
            gpu.LocalMemory.Contains(pages[i]).Should().BeTrue();
            gpu.LocalMemory.ChunkOf(pages[i]).Should().Be(gpu.LocalMemory.ChunkOf(pages[0]));
            DevPagemap.OfPage(machine, pages[i])!.Owner.Should().BeSameAs(gpu.LocalMemory.Owner);
        }

        gpu.LocalMemory.FreePages.Should().Be(gpu.LocalMemory.CapacityPages - 5);
        gpu.LocalMemory.Pagemaps.Should().ContainSingle().Which.Type.Should().Be(MemoryType.DevicePrivate);
    }

    [Fact]
    public void PutPagesComeBackToThePoolAndTheClientHears()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, RecordingClient client) = NewGpu(machine);
        Pfn[] pages = AllocateUnlocked(gpu, 3);

        PutAll(machine, pages);

        gpu.LocalMemory.FreePages.Should().Be(gpu.LocalMemory.CapacityPages);
        client.Freed.Should().Equal(pages);
        gpu.Statistics.PagesFreed.Should().Be(3);
        AllocateUnlocked(gpu, 3).Should().Equal(pages, "the lowest free pages of the best-fitting chunk are handed out again");
    }

    [Fact]
    public void AWholeChunkRequestGetsOneWholeChunk()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        AllocateUnlocked(gpu, 1);
        int chunkPages = gpu.LocalMemory.ChunkPages;

        Pfn[] chunk = AllocateUnlocked(gpu, chunkPages);

        chunk.Select(gpu.LocalMemory.ChunkOf).Distinct().Should().ContainSingle();
        gpu.LocalMemory.ChunkOf(chunk[0]).Should().NotBe(0, "chunk 0 is partly used");
    }

    [Fact]
    public void AllocationStopsWhenTheMemoryIsFull()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine, memoryMiB: 4);
        var pages = new Pfn[gpu.LocalMemory.CapacityPages + 10];

        gpu.LocalMemory.Allocate(pages).Should().Be((int)gpu.LocalMemory.CapacityPages);

        gpu.LocalMemory.FreePages.Should().Be(0);
        pages.Take((int)gpu.LocalMemory.CapacityPages).Distinct().Should().HaveCount((int)gpu.LocalMemory.CapacityPages);
        gpu.LocalMemory.Allocate(new Pfn[1]).Should().Be(0);
    }

    [Fact]
    public void MigrateToRamGoesToTheAttachedClient()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, RecordingClient client) = NewGpu(machine);
        client.MigrateToRamResult = VmFaultResult.None;
        var mm = new Mm(machine);
        ulong address = mm.Mmap(0, Page, Protection.Read | Protection.Write, MapFlags.Private | MapFlags.Anonymous);
        mm.Write(address, new byte[] { 1 });
        Pfn[] device = AllocateUnlocked(gpu, 1);
        var ops = (IDevPagemapOps)gpu.LocalMemory;
        VmFaultResult result;
        using (mm.MmapReadLock())
        {
            var fault = new DevicePrivateFault(gpu.LocalMemory.Pagemaps[0], device[0], address, IsWrite: false, mm.FindVma(address)!);
            result = ops.MigrateToRam(fault);
        }

        result.Should().Be(VmFaultResult.None);

        client.MigrateToRamCalls.Should().Be(1);
        machine.PutPage(device[0]);
    }

    [Fact]
    public void ASecondClientIsRefused()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);

        Action attach = () => gpu.LocalMemory.Attach(new RecordingClient());

        attach.Should().Throw<HmmException>().Which.Error.Should().Be(Errno.EBUSY);
    }

    [Fact]
    public async Task UnbindTearsThePagemapsDownAfterTheDriversActions()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] pages = AllocateUnlocked(gpu, 4);
        DevPagemap pagemap = gpu.LocalMemory.Pagemaps[0];
        bool driverRan = false;
        gpu.Device.AddAction(() =>
        {
            // The driver's eviction: every device page is put before the pagemaps' teardown waits for them.
            pagemap.State.Should().Be(DevPagemapState.Live);
            PutAll(machine, pages);
            driverRan = true;
            return Task.CompletedTask;
        });

        await gpu.Device.UnbindAsync().WaitAsync(TimeSpan.FromSeconds(30));

        driverRan.Should().BeTrue();
        pagemap.State.Should().Be(DevPagemapState.Removed);
        gpu.LocalMemory.Allocate(new Pfn[1]).Should().Be(0);
        machine.Resources().Should().ContainSingle("the device's region is released too");
    }

    [Fact]
    public void PagemapsAreRegisteredOnlyAsAllocationsNeedThem()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine, memoryMiB: 640);
        gpu.LocalMemory.Pagemaps.Should().BeEmpty();
        int perPagemap = 256 * 256;

        Pfn[] first = AllocateUnlocked(gpu, perPagemap);
        gpu.LocalMemory.Pagemaps.Should().ContainSingle();
        Pfn[] second = AllocateUnlocked(gpu, perPagemap + 1);

        gpu.LocalMemory.Pagemaps.Should().HaveCount(3);
        gpu.LocalMemory.Pagemaps.Select(p => p.PageCount).Should().Equal(65536UL, 65536UL, 32768UL);
        gpu.Statistics.PagemapsRegistered.Should().Be(3);
        gpu.LocalMemory.ChunkOf(second[^1]).Should().Be(256, "chunks are numbered across pagemaps");
        gpu.LocalMemory.Contains(first[0] + (ulong)(3 * perPagemap)).Should().BeFalse("past the last registered pagemap");
        gpu.LocalMemory.FreePages.Should().Be(gpu.LocalMemory.CapacityPages - (2 * perPagemap) - 1);
        PutAll(machine, first);
        PutAll(machine, second);
    }

    [Fact]
    public void LargerChunksAreHandedOutWhole()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine, options: new SimGpuOptions { MemoryBytes = 16 * MiB, ChunkBytes = 4 * MiB });

        Pfn[] pages = AllocateUnlocked(gpu, 1500);

        gpu.LocalMemory.ChunkPages.Should().Be(1024);
        pages.Select(gpu.LocalMemory.ChunkOf).Distinct().Should().HaveCount(2);
        pages.Zip(pages.Skip(1)).Should().OnlyContain(p => p.Second.Value == p.First.Value + 1);
    }

    [Fact]
    public void APartlyUsedChunkThatFitsIsPreferredOverAFreshOne()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine);
        Pfn[] a = AllocateUnlocked(gpu, 492);       // chunk 0: 20 left
        Pfn[] b = AllocateUnlocked(gpu, 400);       // chunk 1: 112 left
        b.Select(gpu.LocalMemory.ChunkOf).Distinct().Should().ContainSingle().Which.Should().NotBe(gpu.LocalMemory.ChunkOf(a[0]));

        Pfn[] c = AllocateUnlocked(gpu, 100);       // chunk 1: 12 left
        Pfn[] d = AllocateUnlocked(gpu, 10);        // the best fit is chunk 1
        Pfn[] e = AllocateUnlocked(gpu, 15);        // only chunk 0 still fits it

        c.Select(gpu.LocalMemory.ChunkOf).Distinct().Should().Equal(gpu.LocalMemory.ChunkOf(b[0]));
        d.Select(gpu.LocalMemory.ChunkOf).Distinct().Should().Equal(gpu.LocalMemory.ChunkOf(b[0]));
        e.Select(gpu.LocalMemory.ChunkOf).Distinct().Should().Equal(gpu.LocalMemory.ChunkOf(a[0]));
    }

    [Fact]
    public void DeviceCoherentMemoryServesTheCpuInPlace()
    {
        PhysicalMemory machine = NewMachine();
        (SimulatedGpu gpu, _) = NewGpu(machine, options: new SimGpuOptions { MemoryType = MemoryType.DeviceCoherent, MemoryBytes = 8 * MiB });

        Pfn[] pages = AllocateUnlocked(gpu, 2);

        gpu.LocalMemory.Type.Should().Be(MemoryType.DeviceCoherent);
        gpu.LocalMemory.Pagemaps[0].Type.Should().Be(MemoryType.DeviceCoherent);
        machine.PageData(pages[0])[0] = 42;
        machine.ReadPageData(pages[0])[0].Should().Be(42);
        PutAll(machine, pages);
        gpu.LocalMemory.FreePages.Should().Be(gpu.LocalMemory.CapacityPages);
    }
}
