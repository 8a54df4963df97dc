using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

namespace Hmm;

/// <summary>
/// The simulated machine's physical memory: the sparse memmap of <see cref="PageFrame"/>s, System RAM and its
/// page allocator, page references, the page lock, the page data store, and the hotplug of device ranges that
/// the DeviceMemory layer builds on.
/// </summary>
/// <remarks>
/// <para>Layout: System RAM is <c>[0, RamBytes)</c>; frame 0 is reserved so that a zeroed PFN never names a
/// usable page. Device ranges live anywhere else below 2^46.</para>
/// <para>Concurrency model: page references and flags change with Interlocked on the frame itself, so the
/// reference and lock paths take no lock. Adding or removing memory takes the hotplug lock
/// (<c>mem_hotplug_lock</c>); lookups never do.</para>
/// </remarks>
public sealed partial class PhysicalMemory
{
    private readonly SectionTable _sections = new();
    private readonly RamAllocator _ram;

    /// <summary>Creates physical memory with System RAM online.</summary>
    /// <param name="options">Size and mode; null for the defaults. Every option is checked before anything is built.</param>
    /// <exception cref="ArgumentNullException"><see cref="PhysicalMemoryOptions.Logger"/> is null.</exception>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: RAM size is zero, not a multiple of 2 MiB, or beyond 2^46 bytes.</exception>
    public PhysicalMemory(PhysicalMemoryOptions? options = null)
    {
        options ??= new PhysicalMemoryOptions();
        if (options.Logger is null)
        {
            throw new ArgumentNullException(nameof(options), "PhysicalMemoryOptions.Logger must not be null; leave it unset for NullLogger.Instance.");
        }

        if (options.RamBytes == 0 || options.RamBytes % Section.SubsectionBytes != 0 || options.RamBytes > 1UL << Pfn.MaxPhysicalAddressBits)
        {
            ThrowHelper.ThrowHmm(Errno.EINVAL, $"RAM size {options.RamBytes} must be a positive multiple of 2 MiB no larger than 2^{Pfn.MaxPhysicalAddressBits} bytes.");
        }

        Logger = options.Logger;
        StoresPageData = options.StorePageData;
        RamBytes = options.RamBytes;
        ulong ramPages = RamBytes >> PageSize.Shift;
        _ram = new RamAllocator(firstPfn: 2, endPfn: ramPages);
        _resources.Add(new IoResource(SystemRamResourceName, new PhysicalRange(0, RamBytes)));

        lock (_hotplugLock)
        {
            OnlineSubsectionsUnsynchronized(new PhysicalRange(0, RamBytes));
        }

        Frame(new Pfn(0))._flags = (ulong)PageFlags.Reserved;
        ref PageFrame zero = ref Frame(ZeroPage);
        zero._flags = (ulong)(PageFlags.Reserved | PageFlags.Uptodate);
        zero._refCount = 1;
        Log.MemoryOnline(Logger, RamBytes, StoresPageData ? "stored" : "metadata-only");
    }

    /// <summary>Bytes of System RAM.</summary>
    public ulong RamBytes { get; }

    /// <summary>
    /// The shared zero page (<c>ZERO_PAGE</c>): frame 1, always zero, mapped read-only for reads of untouched
    /// anonymous memory. Its references are not counted, as in the kernel.
    /// </summary>
    public static Pfn ZeroPage => new(1);

    /// <summary>Frames the RAM allocator manages (all RAM frames but the reserved frame 0 and the zero page).</summary>
    public ulong RamPages => _ram.TotalPages;

    /// <summary>RAM frames currently free.</summary>
    public ulong FreeRamPages => _ram.FreePages;

    /// <summary>Whether page frames carry real data (<see cref="PhysicalMemoryOptions.StorePageData"/>).</summary>
    public bool StoresPageData { get; }

    /// <summary>Arms failures of simulated kernel steps on this memory, to test error paths.</summary>
    public FaultInjector FaultInjection { get; } = new();

    /// <summary>
    /// The machine's trace hook: every layer on this memory (the core, devices, drivers, workloads) emits its
    /// trace events through it. Off until a <see cref="TraceWriter"/> is attached; never null.
    /// </summary>
    public TraceEmitter Trace { get; } = new();

    /// <summary>The logger the library's layers above use for this memory (from <see cref="PhysicalMemoryOptions.Logger"/>). Internal: drivers keep their own.</summary>
    internal ILogger Logger { get; }

    /// <summary>Whether the frame has a struct page (<c>pfn_valid</c>): RAM, or a registered device range.</summary>
    /// <param name="pfn">The frame.</param>
    /// <returns>True when the frame's section is present and the frame's subsection is online.</returns>
    public bool IsPresent(Pfn pfn) => _sections.Find(pfn) is { } section && IsSubsectionOnline(section, pfn);

    /// <summary>The metadata of a present frame, read-only (<c>pfn_to_page</c>).</summary>
    /// <param name="pfn">The frame.</param>
    /// <returns>A reference into the memmap, valid while the caller holds a reference on the page or the frame is RAM.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: the frame has no struct page.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref readonly PageFrame Page(Pfn pfn) => ref Frame(pfn);

    /// <summary>
    /// Allocates one System RAM page (<c>alloc_page</c>): refcount 1, flags clear, unlocked. Never frame 0 or
    /// <see cref="ZeroPage"/>: reserved pages are not the allocator's.
    /// </summary>
    /// <returns>The frame.</returns>
    /// <exception cref="HmmException"><see cref="Errno.ENOMEM"/>: no free RAM page.</exception>
    public Pfn AllocatePage()
    {
        if (!TryAllocatePage(out Pfn pfn))
        {
            ThrowHelper.ThrowNoFreeRamPage(RamPages);
        }

        return pfn;
    }

    /// <summary>Allocates one System RAM page if one is free; see <see cref="AllocatePage"/>.</summary>
    /// <param name="pfn">The frame, when the call returns true.</param>
    /// <returns>False when RAM is exhausted or an injected <see cref="FaultPoint.PageAllocation"/> fails.</returns>
    public bool TryAllocatePage(out Pfn pfn)
    {
        if (FaultInjection.ShouldFail(FaultPoint.PageAllocation) || !_ram.TryAllocate(out pfn))
        {
            pfn = default;
            return false;
        }

        ref PageFrame frame = ref Frame(pfn);
        frame._flags = 0;
        frame._mapCount = 0;
        frame._mapping = 0;
        frame._index = 0;
        frame._private = 0;
        Volatile.Write(ref frame._refCount, 1);
        HmmMetrics.PageAllocations.Add(1);
        return true;
    }

    /// <summary>
    /// The page's 4 KiB of data, writable (device pages too: this is device memory's contents). The block holding
    /// it is allocated, zeroed, on first touch. Reserved pages (frame 0 and <see cref="ZeroPage"/>) are refused:
    /// their data is read-only to every caller; read them with <see cref="ReadPageData"/>.
    /// </summary>
    /// <param name="pfn">A present, non-reserved frame.</param>
    /// <returns>The page's bytes; valid while the frame is present.</returns>
    /// <exception cref="HmmException">
    /// <see cref="Errno.EFAULT"/>: no struct page; <see cref="Errno.EPERM"/>: a reserved page;
    /// <see cref="Errno.EOPNOTSUPP"/>: metadata-only mode. Nothing changes.
    /// </exception>
    public Span<byte> PageData(Pfn pfn)
    {
        if ((Volatile.Read(ref Frame(pfn)._flags) & (ulong)PageFlags.Reserved) != 0)
        {
            ThrowHelper.ThrowReservedPageData(pfn);
        }

        return DataOf(pfn);
    }

    /// <summary>
    /// The page's 4 KiB of data, read-only. Works for every present frame, including <see cref="ZeroPage"/>,
    /// which always reads as zeros.
    /// </summary>
    /// <param name="pfn">A present frame.</param>
    /// <returns>The page's bytes; valid while the frame is present.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page; <see cref="Errno.EOPNOTSUPP"/>: metadata-only mode.</exception>
    public ReadOnlySpan<byte> ReadPageData(Pfn pfn) => DataOf(pfn);

    /// <summary>Sets a device page's driver-private word (<c>page->zone_device_data</c>).</summary>
    /// <param name="pfn">A device page the caller owns.</param>
    /// <param name="value">The driver's value.</param>
    /// <exception cref="HmmException"><see cref="Errno.EFAULT"/>: no struct page; <see cref="Errno.EINVAL"/>: not a device page.</exception>
    public void SetZoneDeviceData(Pfn pfn, ulong value)
    {
        ref PageFrame frame = ref Frame(pfn);
        if (!frame.IsZoneDevice)
        {
            ThrowHelper.ThrowNotDevicePage(pfn);
        }

        Volatile.Write(ref frame._zoneDeviceData, value);
    }

    /// <summary>What pages' mapping fields name: anon_vmas and files of the address-space layer.</summary>
    internal MappingTable Mappings { get; } = new();

    /// <summary>The writable frame of a present PFN. For the layers above; they keep the frame's rules.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref PageFrame Frame(Pfn pfn)
    {
        Section section = FindPresentSection(pfn);
        return ref section.Frames[(int)(pfn.Value & Section.PageMask)];
    }

    /// <summary>The writable frame of <paramref name="pfn"/> when it is present, else a null reference: <see cref="IsPresent"/> and <see cref="Frame"/> in one memmap lookup.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref PageFrame FrameIfPresent(Pfn pfn)
    {
        Section? section = _sections.Find(pfn);
        if (section is null || !IsSubsectionOnline(section, pfn))
        {
            return ref Unsafe.NullRef<PageFrame>();
        }

        return ref section.Frames[(int)(pfn.Value & Section.PageMask)];
    }

    /// <summary>
    /// The page's data without the reserved-page check, for the layers above that read any mapped page (the
    /// zero page included) and write only through writable mappings, which never map a reserved page.
    /// </summary>
    internal Span<byte> DataOf(Pfn pfn)
    {
        Section section = FindPresentSection(pfn);
        if (!StoresPageData)
        {
            ThrowHelper.ThrowNoPageData();
        }

        ulong offsetInSection = pfn.Value & Section.PageMask;
        int subsection = (int)(offsetInSection >> Section.SubsectionPageShift);
        byte[] block = Volatile.Read(ref section.Data[subsection]) ?? AllocateDataBlock(section, subsection);
        int offset = (int)(offsetInSection & (Section.PagesPerSubsection - 1)) << PageSize.Shift;
        return block.AsSpan(offset, PageSize.Bytes);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Section FindPresentSection(Pfn pfn)
    {
        Section? section = _sections.Find(pfn);
        if (section is null || !IsSubsectionOnline(section, pfn))
        {
            ThrowHelper.ThrowNotPresent(pfn);
        }

        return section;
    }

    private static bool IsSubsectionOnline(Section section, Pfn pfn) =>
        section.SubsectionPagemap[(int)((pfn.Value & Section.PageMask) >> Section.SubsectionPageShift)] != OfflineSubsection;

    private static byte[] AllocateDataBlock(Section section, int subsection)
    {
        byte[] block = GC.AllocateArray<byte>(PageSize.Bytes * Section.PagesPerSubsection, pinned: true);
        return Interlocked.CompareExchange(ref section.Data[subsection], block, null) ?? block;
    }
}
