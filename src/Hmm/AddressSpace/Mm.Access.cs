
namespace Hmm;

// CPU reads and writes of user memory, page by page, each through the fault handler when the entry does not
// permit the access. The bytes of one page are copied under its PTE lock after re-checking the entry, so a copy
// never lands in a page that a concurrent COW break, unmap or migration has just replaced.
public sealed partial class Mm
{
    /// <summary>Reads user memory as the process's CPU would, faulting pages in as needed.</summary>
    /// <param name="address">The first byte.</param>
    /// <param name="destination">Where to copy to; its length is the number of bytes read.</param>
    /// <exception cref="SegmentationFaultException">A byte is unmapped, not readable, or a fault handler failed (<c>SIGBUS</c>); bytes before it may have been read, nothing is changed.</exception>
    /// <exception cref="HmmException">Error model: invalid arguments or state, with the kernel's errno. <see cref="Errno.ESRCH"/>: exited; <see cref="Errno.ENOMEM"/>: out of memory; <see cref="Errno.EOPNOTSUPP"/>: metadata-only memory; <see cref="Errno.EFAULT"/>: a special entry (<see cref="InsertPfn"/>, <see cref="RemapPfnRange"/>) maps a frame without a struct page, whose bytes the simulator does not have (the kernel's CPU would reach device I/O memory).</exception>
    public void Read(ulong address, Span<byte> destination) => Access(address, destination, default, write: false);

    /// <summary>Writes user memory as the process's CPU would, faulting pages in and breaking copy-on-write as needed.</summary>
    /// <param name="address">The first byte.</param>
    /// <param name="source">What to write.</param>
    /// <exception cref="SegmentationFaultException">A byte is unmapped, not writable, or a fault handler failed (<c>SIGBUS</c>); the write stops before that page and earlier pages keep what was written.</exception>
    /// <exception cref="HmmException">Error model: invalid arguments or state, with the kernel's errno. <see cref="Errno.ESRCH"/>: exited; <see cref="Errno.ENOMEM"/>: out of memory; <see cref="Errno.EOPNOTSUPP"/>: metadata-only memory; <see cref="Errno.EFAULT"/>: as for <see cref="Read"/>.</exception>
    public void Write(ulong address, ReadOnlySpan<byte> source) => Access(address, default, source, write: true);

    private void Access(ulong address, Span<byte> destination, ReadOnlySpan<byte> source, bool write)
    {
        int length = write ? source.Length : destination.Length;
        if (length == 0)
        {
            return;
        }

        if (address >= TaskSize || (ulong)length > TaskSize - address)
        {
            throw new SegmentationFaultException(address, write, isBusError: false, "address beyond the user address space");
        }

        if (!Memory.StoresPageData)
        {
            ThrowHelper.ThrowHmm(Errno.EOPNOTSUPP, "CPU access needs page data; this memory runs in metadata-only mode.");
        }

        using MmapLockGuard guard = MmapReadLock();
        int done = 0;
        while (done < length)
        {
            ulong position = address + (ulong)done;
            int inPage = (int)(position & (PageSize.Bytes - 1));
            int chunk = Math.Min(length - done, PageSize.Bytes - inPage);
            Vma vma = CheckAccess(position, write);
            while (!TryCopy(position & PageSize.Mask, inPage, write, destination.Slice(write ? 0 : done, write ? 0 : chunk), write ? source.Slice(done, chunk) : default))
            {
                VmFaultResult result = HandleMmFaultUnchecked(vma, position, write ? FaultFlags.Write : FaultFlags.None);
                if (result != VmFaultResult.None)
                {
                    if ((result & VmFaultResult.Oom) != 0)
                    {
                        ThrowHelper.ThrowHmm(Errno.ENOMEM, $"Out of memory faulting 0x{position:x}.");
                    }

                    throw new SegmentationFaultException(position, write, isBusError: true, $"the fault handler returned {result}");
                }
            }

            done += chunk;
        }
    }

    /// <summary>The area holding <paramref name="address"/> if the access is allowed; throws the segmentation fault otherwise.</summary>
    private Vma CheckAccess(ulong address, bool write)
    {
        Vma? vma = _vmas.Find(address);
        if (vma is null)
        {
            throw new SegmentationFaultException(address, write, isBusError: false, "no mapping");
        }

        // x86-64 cannot map a page writable or executable without making it readable, so a read is refused only
        // in an area with no access at all (access_error: !vma_is_accessible).
        VmFlags needed = write ? VmFlags.Write : VmFlags.Read | VmFlags.Write | VmFlags.Exec;
        if ((vma.Flags & needed) == 0)
        {
            throw new SegmentationFaultException(address, write, isBusError: false, $"mapping {vma} does not allow {(write ? "writes" : "reads")}");
        }

        return vma;
    }

    /// <summary>Copies within one page if its entry permits the access now; false if a fault is needed first.</summary>
    private bool TryCopy(ulong pageAddress, int offset, bool write, Span<byte> destination, ReadOnlySpan<byte> source)
    {
        PteTable? table = _pageTable.Find(pageAddress);
        if (table is null)
        {
            return false;
        }

        int index = PageTable.PteIndex(pageAddress);
        lock (table.Lock)
        {
            Pte pte = table.Read(index);
            if (!pte.IsPresent || (write && !pte.IsWritable))
            {
                return false;
            }

            Span<byte> data = Memory.DataOf(pte.Pfn).Slice(offset, write ? source.Length : destination.Length);
            if (write)
            {
                source.CopyTo(data);
                if (!pte.IsDirty)
                {
                    table.SetUnsynchronized(index, new Pte(pte.Raw | Pte.DirtyBit));
                }
            }
            else
            {
                data.CopyTo(destination);
            }

            return true;
        }
    }
}
