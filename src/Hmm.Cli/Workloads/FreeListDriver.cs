
namespace Hmm.Cli.Workloads;

/// <summary>
/// A minimal device-memory driver for the built-in workload: keeps its free device pages on a stack and takes
/// them back when the last reference is put.
/// </summary>
internal sealed class FreeListDriver : IDevPagemapOps
{
    private readonly Lock _lock = new();
    private readonly Stack<Pfn> _free = new();

    public int FreedPages { get; private set; }

    public void AddRange(PhysicalRange range)
    {
        lock (_lock)
        {
            for (ulong i = range.PageCount; i-- > 0;)
            {
                _free.Push(range.StartPfn + i);
            }
        }
    }

    public bool TryTake(out Pfn pfn)
    {
        lock (_lock)
        {
            return _free.TryPop(out pfn);
        }
    }

    public void PageFree(DevPagemap pagemap, Pfn pfn)
    {
        lock (_lock)
        {
            _free.Push(pfn);
            FreedPages++;
        }
    }

    public VmFaultResult MigrateToRam(in DevicePrivateFault fault) => VmFaultResult.Sigbus;
}
