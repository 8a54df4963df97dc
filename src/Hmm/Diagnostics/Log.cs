using Microsoft.Extensions.Logging;

namespace Hmm;

/// <summary>
/// Every log event of the library, source-generated so nothing is formatted when the level is off. Event ids
/// are stable: add new ones, never renumber. Events are per operation (a registration, a teardown), never per
/// page access.
/// </summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Physical memory online: {RamBytes} bytes of System RAM, page data {DataMode}")]
    public static partial void MemoryOnline(ILogger logger, ulong ramBytes, string dataMode);

    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Pagemap {PagemapId} ({Type}) registered over {RangeCount} range(s), {PageCount} pages")]
    public static partial void PagemapRegistered(ILogger logger, int pagemapId, MemoryType type, int rangeCount, ulong pageCount);

    [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "Pagemap registration failed at range {RangeIndex}: {Error}; unwound {UnwoundRanges} range(s)")]
    public static partial void PagemapRegistrationFailed(ILogger logger, int rangeIndex, Errno error, int unwoundRanges);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "Pagemap {PagemapId} killed; waiting for {Outstanding} outstanding reference(s)")]
    public static partial void PagemapKilled(ILogger logger, int pagemapId, long outstanding);

    [LoggerMessage(EventId = 103, Level = LogLevel.Information, Message = "Pagemap {PagemapId} removed")]
    public static partial void PagemapRemoved(ILogger logger, int pagemapId);

    [LoggerMessage(EventId = 110, Level = LogLevel.Information, Message = "Device {Device} unbinding: {ActionCount} release action(s)")]
    public static partial void DeviceUnbinding(ILogger logger, string device, int actionCount);

    [LoggerMessage(EventId = 111, Level = LogLevel.Information, Message = "Device {Device} unbound")]
    public static partial void DeviceUnbound(ILogger logger, string device);

    [LoggerMessage(EventId = 112, Level = LogLevel.Warning, Message = "Device {Device} unbind timed out after {Timeout}; {PageCount} page(s) still referenced")]
    public static partial void DeviceUnbindTimedOut(ILogger logger, string device, TimeSpan timeout, int pageCount);

    [LoggerMessage(EventId = 113, Level = LogLevel.Warning, Message = "Device {Device}: registering a release action failed; released at once")]
    public static partial void DevmActionRegistrationFailed(ILogger logger, string device);

    [LoggerMessage(EventId = 300, Level = LogLevel.Debug, Message = "{Mm}: mmap [{Start:x}, {End:x}) {Flags}")]
    public static partial void Mapped(ILogger logger, string mm, ulong start, ulong end, VmFlags flags);

    [LoggerMessage(EventId = 301, Level = LogLevel.Debug, Message = "{Mm}: munmap [{Start:x}, {End:x})")]
    public static partial void Unmapped(ILogger logger, string mm, ulong start, ulong end);

    [LoggerMessage(EventId = 302, Level = LogLevel.Debug, Message = "{Mm}: forked {Child} with {AreaCount} area(s)")]
    public static partial void Forked(ILogger logger, string mm, string child, int areaCount);

    [LoggerMessage(EventId = 303, Level = LogLevel.Debug, Message = "{Mm}: address space torn down")]
    public static partial void AddressSpaceExited(ILogger logger, string mm);
}
