namespace Hmm;

// The factories and typed readers, one pair per kind. The payload each kind uses is listed in
// docs/trace-format.md and checked by TraceFormat.Validate; fields a kind does not use stay zero.
public readonly partial record struct TraceEvent
{
    /// <summary>A CPU page fault (<c>handle_mm_fault</c>).</summary>
    /// <param name="address">The faulting address.</param>
    /// <param name="flags">The fault flags (write, remote, unshare).</param>
    /// <param name="result">What the fault handler returned.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent CpuFault(ulong address, FaultFlags flags, VmFaultResult result, long virtualNs) =>
        new(TraceEventKind.CpuFault, TraceEngine.Cpu, 0, 0, (uint)flags, virtualNs, address, (ulong)(uint)result, 0);

    /// <summary>Reads a <see cref="TraceEventKind.CpuFault"/> event.</summary>
    /// <returns>The faulting address, fault flags and result.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong Address, FaultFlags Flags, VmFaultResult Result) AsCpuFault()
    {
        Expect(TraceEventKind.CpuFault);
        return (_a, (FaultFlags)_arg, (VmFaultResult)_b);
    }

    /// <summary>A device page fault entering the device's fault buffer, on its fault unit.</summary>
    /// <param name="device">The device.</param>
    /// <param name="address">The faulting virtual address.</param>
    /// <param name="access">The access the fault was taken for.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent DeviceFault(ushort device, ulong address, TraceDeviceAccess access, long virtualNs) =>
        new(TraceEventKind.DeviceFault, TraceEngine.FaultUnit, device, 0, (uint)access, virtualNs, address, 0, 0);

    /// <summary>Reads a <see cref="TraceEventKind.DeviceFault"/> event.</summary>
    /// <returns>The faulting address and the access.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong Address, TraceDeviceAccess Access) AsDeviceFault()
    {
        Expect(TraceEventKind.DeviceFault);
        return (_a, (TraceDeviceAccess)_arg);
    }

    /// <summary>A batch of device faults serviced together, on the device's fault unit.</summary>
    /// <param name="device">The device.</param>
    /// <param name="batch">The batch's number on its device.</param>
    /// <param name="faults">Faults delivered to the batch, duplicates included.</param>
    /// <param name="duplicatesMerged">Faults merged into another fault of the batch (same page).</param>
    /// <param name="startNs">When servicing began, on the virtual clock.</param>
    /// <param name="endNs">When servicing ended, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent FaultBatch(ushort device, uint batch, ulong faults, ulong duplicatesMerged, long startNs, long endNs) =>
        new(TraceEventKind.FaultBatch, TraceEngine.FaultUnit, device, 0, batch, startNs, faults, duplicatesMerged, (ulong)endNs);

    /// <summary>Reads a <see cref="TraceEventKind.FaultBatch"/> event (its start is <see cref="VirtualNs"/>).</summary>
    /// <returns>The batch number, faults delivered, duplicates merged and the end on the virtual clock.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (uint Batch, ulong Faults, ulong DuplicatesMerged, long EndNs) AsFaultBatch()
    {
        Expect(TraceEventKind.FaultBatch);
        return (_arg, _a, _b, (long)_c);
    }

    /// <summary>One <c>hmm_range_fault</c> call by a driver of <paramref name="device"/>.</summary>
    /// <param name="device">The device whose driver mirrors the range.</param>
    /// <param name="start">The range's first address.</param>
    /// <param name="pages">Pages in the range.</param>
    /// <param name="retries">Times the call returned <see cref="Errno.EBUSY"/> and was started again before this result.</param>
    /// <param name="result">What the call returned.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent RangeFault(ushort device, ulong start, ulong pages, ulong retries, Errno result, long virtualNs) =>
        new(TraceEventKind.RangeFault, TraceEngine.Cpu, device, 0, (uint)result, virtualNs, start, pages, retries);

    /// <summary>Reads a <see cref="TraceEventKind.RangeFault"/> event.</summary>
    /// <returns>The range start, pages, retries and result.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong Start, ulong Pages, ulong Retries, Errno Result) AsRangeFault()
    {
        Expect(TraceEventKind.RangeFault);
        return (_a, _b, _c, (Errno)_arg);
    }

    /// <summary>An mmu notifier invalidation of <c>[start, end)</c>.</summary>
    /// <param name="start">The first address invalidated.</param>
    /// <param name="end">The address after the last one invalidated.</param>
    /// <param name="reason">The notifier event (why the range is invalidated).</param>
    /// <param name="notifiersVisited">Interval notifiers whose callback ran.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent Invalidate(ulong start, ulong end, MmuNotifierEvent reason, ulong notifiersVisited, long virtualNs) =>
        new(TraceEventKind.Invalidate, TraceEngine.Cpu, 0, 0, (uint)reason, virtualNs, start, end, notifiersVisited);

    /// <summary>Reads a <see cref="TraceEventKind.Invalidate"/> event.</summary>
    /// <returns>The range, the notifier event and the interval notifiers visited.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong Start, ulong End, MmuNotifierEvent Reason, ulong NotifiersVisited) AsInvalidate()
    {
        Expect(TraceEventKind.Invalidate);
        return (_a, _b, (MmuNotifierEvent)_arg, _c);
    }

    /// <summary><c>migrate_vma_setup</c> for a migration by a driver of <paramref name="device"/>.</summary>
    /// <param name="device">The device migrating.</param>
    /// <param name="direction">Where the pages go.</param>
    /// <param name="select">Which pages the caller asked for.</param>
    /// <param name="start">The range's first address.</param>
    /// <param name="pages">Pages in the range.</param>
    /// <param name="selected">Pages collected and isolated for migration (<c>cpages</c>).</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent MigrateSetup(
        ushort device, TraceDirection direction, MigrateVmaSelect select, ulong start, ulong pages, ulong selected, long virtualNs) =>
        new(TraceEventKind.MigrateSetup, TraceEngine.Cpu, device, (ushort)direction, (uint)select, virtualNs, start, pages, selected);

    /// <summary>Reads a <see cref="TraceEventKind.MigrateSetup"/> event.</summary>
    /// <returns>The direction, the selection, the range start, pages in the range and pages selected.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (TraceDirection Direction, MigrateVmaSelect Select, ulong Start, ulong Pages, ulong Selected) AsMigrateSetup()
    {
        Expect(TraceEventKind.MigrateSetup);
        return ((TraceDirection)_flags, (MigrateVmaSelect)_arg, _a, _b, _c);
    }

    /// <summary><c>migrate_vma_pages</c>: the new pages are installed where the migration can still go ahead.</summary>
    /// <param name="device">The device migrating.</param>
    /// <param name="direction">Where the pages go.</param>
    /// <param name="start">The range's first address.</param>
    /// <param name="pages">Pages in the range.</param>
    /// <param name="migrating">Pages still marked to migrate afterwards.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent MigratePages(ushort device, TraceDirection direction, ulong start, ulong pages, ulong migrating, long virtualNs) =>
        new(TraceEventKind.MigratePages, TraceEngine.Cpu, device, (ushort)direction, 0, virtualNs, start, pages, migrating);

    /// <summary>Reads a <see cref="TraceEventKind.MigratePages"/> event.</summary>
    /// <returns>The direction, the range start, pages in the range and pages still migrating.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (TraceDirection Direction, ulong Start, ulong Pages, ulong Migrating) AsMigratePages()
    {
        Expect(TraceEventKind.MigratePages);
        return ((TraceDirection)_flags, _a, _b, _c);
    }

    /// <summary><c>migrate_vma_finalize</c>: the migration's outcome.</summary>
    /// <param name="device">The device migrating.</param>
    /// <param name="direction">Where the pages went.</param>
    /// <param name="start">The range's first address.</param>
    /// <param name="moved">Pages that now live at their destination.</param>
    /// <param name="declined">Selected pages that stayed where they were (busy, pinned, refused by the driver).</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent MigrateFinalize(ushort device, TraceDirection direction, ulong start, ulong moved, ulong declined, long virtualNs) =>
        new(TraceEventKind.MigrateFinalize, TraceEngine.Cpu, device, (ushort)direction, 0, virtualNs, start, moved, declined);

    /// <summary>Reads a <see cref="TraceEventKind.MigrateFinalize"/> event.</summary>
    /// <returns>The direction, the range start, pages moved and pages declined.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (TraceDirection Direction, ulong Start, ulong Moved, ulong Declined) AsMigrateFinalize()
    {
        Expect(TraceEventKind.MigrateFinalize);
        return ((TraceDirection)_flags, _a, _b, _c);
    }

    /// <summary>A transfer on one of the device's copy engines.</summary>
    /// <param name="device">The device.</param>
    /// <param name="engine">The copy engine's number on the device.</param>
    /// <param name="direction">The direction of the copy.</param>
    /// <param name="bytes">Bytes copied.</param>
    /// <param name="startNs">When the copy began, on the virtual clock.</param>
    /// <param name="endNs">When the copy ended, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent Copy(ushort device, uint engine, TraceDirection direction, ulong bytes, long startNs, long endNs) =>
        new(TraceEventKind.Copy, TraceEngine.CopyEngine, device, (ushort)direction, engine, startNs, bytes, (ulong)endNs, 0);

    /// <summary>Reads a <see cref="TraceEventKind.Copy"/> event (its start is <see cref="VirtualNs"/>).</summary>
    /// <returns>The copy engine's number, the direction, the bytes and the end on the virtual clock.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (uint Engine, TraceDirection Direction, ulong Bytes, long EndNs) AsCopy()
    {
        Expect(TraceEventKind.Copy);
        return (_arg, (TraceDirection)_flags, _a, (long)_b);
    }

    /// <summary>Device memory evicted back to system memory (one chunk, or part of one).</summary>
    /// <param name="device">The device.</param>
    /// <param name="firstPfn">The first device page frame evicted.</param>
    /// <param name="pages">Pages evicted.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent Evict(ushort device, ulong firstPfn, ulong pages, long virtualNs) =>
        new(TraceEventKind.Evict, TraceEngine.Cpu, device, 0, 0, virtualNs, firstPfn, pages, 0);

    /// <summary>Reads a <see cref="TraceEventKind.Evict"/> event.</summary>
    /// <returns>The first device page frame and the pages evicted.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong FirstPfn, ulong Pages) AsEvict()
    {
        Expect(TraceEventKind.Evict);
        return (_a, _b);
    }

    /// <summary>A device TLB invalidation of <c>[start, end)</c>.</summary>
    /// <param name="device">The device.</param>
    /// <param name="start">The first address invalidated.</param>
    /// <param name="end">The address after the last one invalidated.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent TlbInvalidate(ushort device, ulong start, ulong end, long virtualNs) =>
        new(TraceEventKind.TlbInvalidate, TraceEngine.Cpu, device, 0, 0, virtualNs, start, end, 0);

    /// <summary>Reads a <see cref="TraceEventKind.TlbInvalidate"/> event.</summary>
    /// <returns>The range invalidated.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong Start, ulong End) AsTlbInvalidate()
    {
        Expect(TraceEventKind.TlbInvalidate);
        return (_a, _b);
    }

    /// <summary>Device memory allocated.</summary>
    /// <param name="device">The device.</param>
    /// <param name="firstPfn">The first device page frame allocated.</param>
    /// <param name="pages">Pages allocated.</param>
    /// <param name="pagesInUse">Device pages in use on the device afterwards.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent DeviceAlloc(ushort device, ulong firstPfn, ulong pages, ulong pagesInUse, long virtualNs) =>
        new(TraceEventKind.DeviceAlloc, TraceEngine.Cpu, device, 0, 0, virtualNs, firstPfn, pages, pagesInUse);

    /// <summary>Reads a <see cref="TraceEventKind.DeviceAlloc"/> event.</summary>
    /// <returns>The first device page frame, the pages allocated and the device pages in use afterwards.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong FirstPfn, ulong Pages, ulong PagesInUse) AsDeviceAlloc()
    {
        Expect(TraceEventKind.DeviceAlloc);
        return (_a, _b, _c);
    }

    /// <summary>Device memory freed.</summary>
    /// <param name="device">The device.</param>
    /// <param name="firstPfn">The first device page frame freed.</param>
    /// <param name="pages">Pages freed.</param>
    /// <param name="pagesInUse">Device pages in use on the device afterwards.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent DeviceFree(ushort device, ulong firstPfn, ulong pages, ulong pagesInUse, long virtualNs) =>
        new(TraceEventKind.DeviceFree, TraceEngine.Cpu, device, 0, 0, virtualNs, firstPfn, pages, pagesInUse);

    /// <summary>Reads a <see cref="TraceEventKind.DeviceFree"/> event.</summary>
    /// <returns>The first device page frame, the pages freed and the device pages in use afterwards.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong FirstPfn, ulong Pages, ulong PagesInUse) AsDeviceFree()
    {
        Expect(TraceEventKind.DeviceFree);
        return (_a, _b, _c);
    }

    /// <summary>A pagemap lifetime change.</summary>
    /// <param name="device">The device owning the pagemap.</param>
    /// <param name="pagemapId">The pagemap's id (<see cref="DevPagemap.Id"/>).</param>
    /// <param name="change">What changed.</param>
    /// <param name="referencedPages">Device pages of the pagemap still referenced at that moment.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent PagemapLifetime(ushort device, ulong pagemapId, TracePagemapChange change, ulong referencedPages, long virtualNs) =>
        new(TraceEventKind.PagemapLifetime, TraceEngine.Cpu, device, (ushort)change, 0, virtualNs, pagemapId, referencedPages, 0);

    /// <summary>Reads a <see cref="TraceEventKind.PagemapLifetime"/> event.</summary>
    /// <returns>The pagemap id, the change and the pages still referenced.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong PagemapId, TracePagemapChange Change, ulong ReferencedPages) AsPagemapLifetime()
    {
        Expect(TraceEventKind.PagemapLifetime);
        return (_a, (TracePagemapChange)_flags, _b);
    }

    /// <summary>
    /// One field of the configuration a recorded run used, so that a replay can rebuild the same machine. The
    /// recorder numbers the fields (docs/trace-format.md lists those of <c>Hmm.SimGpu</c>'s simulation runs) and
    /// writes them before the run's first <see cref="TraceEventKind.Phase"/> event.
    /// </summary>
    /// <param name="field">The field's number, as the recorder defines it.</param>
    /// <param name="value">The field's value (integers as they are, booleans as 0 or 1).</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent RunConfiguration(uint field, ulong value) =>
        new(TraceEventKind.RunConfiguration, TraceEngine.Cpu, 0, 0, field, 0, value, 0, 0);

    /// <summary>Reads a <see cref="TraceEventKind.RunConfiguration"/> event.</summary>
    /// <returns>The field's number and value.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (uint Field, ulong Value) AsRunConfiguration()
    {
        Expect(TraceEventKind.RunConfiguration);
        return (_arg, _a);
    }

    /// <summary>A phase of a recorded run begins.</summary>
    /// <param name="phase">The phase's number, as the recorder defines it.</param>
    /// <param name="extent">What the phase covers (the recorder says: rows of the kernels, pages of the CPU).</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent Phase(uint phase, ulong extent, long virtualNs) =>
        new(TraceEventKind.Phase, TraceEngine.Cpu, 0, 0, phase, virtualNs, extent, 0, 0);

    /// <summary>Reads a <see cref="TraceEventKind.Phase"/> event.</summary>
    /// <returns>The phase's number and extent.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (uint Phase, ulong Extent) AsPhase()
    {
        Expect(TraceEventKind.Phase);
        return (_arg, _a);
    }

    /// <summary>A kernel launch on one device's compute engine: the device runs rows [<paramref name="firstRow"/>, <paramref name="endRow"/>) of a kernel over <paramref name="extent"/> rows.</summary>
    /// <param name="device">The device.</param>
    /// <param name="firstRow">The first row the device runs.</param>
    /// <param name="endRow">The row after the last one the device runs.</param>
    /// <param name="extent">The rows of the whole kernel, over every device.</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent KernelLaunch(ushort device, ulong firstRow, ulong endRow, ulong extent, long virtualNs) =>
        new(TraceEventKind.KernelLaunch, TraceEngine.Compute, device, 0, 0, virtualNs, firstRow, endRow, extent);

    /// <summary>Reads a <see cref="TraceEventKind.KernelLaunch"/> event.</summary>
    /// <returns>The first row, the end row and the kernel's extent.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong FirstRow, ulong EndRow, ulong Extent) AsKernelLaunch()
    {
        Expect(TraceEventKind.KernelLaunch);
        return (_a, _b, _c);
    }

    /// <summary>
    /// One access of a work item, recorded when the item is given to a warp (its accesses, in the order the warp
    /// issues them, follow one another; the last has <paramref name="endsItem"/> set). This is the kernel's input,
    /// independent of faults and retries: a replay feeds it to its own warps.
    /// </summary>
    /// <param name="device">The device.</param>
    /// <param name="warp">The warp the item was given to (engine times warps per engine plus warp).</param>
    /// <param name="address">The first virtual address accessed.</param>
    /// <param name="bytes">Bytes accessed.</param>
    /// <param name="access">Read, write or atomic.</param>
    /// <param name="endsItem">Whether this is the item's last access.</param>
    /// <param name="item">The work item's index in the kernel.</param>
    /// <param name="virtualNs">When the item was given to the warp, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent DeviceAccess(
        ushort device, uint warp, ulong address, ulong bytes, TraceDeviceAccess access, bool endsItem, ulong item, long virtualNs) =>
        new(TraceEventKind.DeviceAccess, TraceEngine.Compute, device, (ushort)(((uint)access & 0x3) | (endsItem ? 0x4u : 0)), warp, virtualNs, address, bytes, item);

    /// <summary>Reads a <see cref="TraceEventKind.DeviceAccess"/> event.</summary>
    /// <returns>The warp, the address, the bytes, the access, whether it ends its item, and the item.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (uint Warp, ulong Address, ulong Bytes, TraceDeviceAccess Access, bool EndsItem, ulong Item) AsDeviceAccess()
    {
        Expect(TraceEventKind.DeviceAccess);
        return (_arg, _a, _b, (TraceDeviceAccess)(_flags & 0x3), (_flags & 0x4) != 0, _c);
    }

    /// <summary>One access of a recorded run's CPU (the replayable CPU input).</summary>
    /// <param name="address">The first virtual address accessed.</param>
    /// <param name="bytes">Bytes accessed.</param>
    /// <param name="write">Whether it is a write (else a read).</param>
    /// <param name="virtualNs">When, on the virtual clock.</param>
    /// <returns>The event. Never throws.</returns>
    public static TraceEvent CpuAccess(ulong address, ulong bytes, bool write, long virtualNs) =>
        new(TraceEventKind.CpuAccess, TraceEngine.Cpu, 0, write ? (ushort)1 : (ushort)0, 0, virtualNs, address, bytes, 0);

    /// <summary>Reads a <see cref="TraceEventKind.CpuAccess"/> event.</summary>
    /// <returns>The address, the bytes, and whether it is a write.</returns>
    /// <exception cref="HmmException"><see cref="Errno.EINVAL"/>: the event is of another kind.</exception>
    public (ulong Address, ulong Bytes, bool Write) AsCpuAccess()
    {
        Expect(TraceEventKind.CpuAccess);
        return (_a, _b, (_flags & 0x1) != 0);
    }

    private void Expect(TraceEventKind kind)
    {
        if (_kind != kind)
        {
            throw new HmmException(Errno.EINVAL, $"the event is a {_kind} event, not {kind}");
        }
    }
}
