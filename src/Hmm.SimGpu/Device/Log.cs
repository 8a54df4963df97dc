using Hmm.Devices;
using Microsoft.Extensions.Logging;

namespace Hmm.SimGpu;

/// <summary>The simulated GPU's log messages, defined once so that logging allocates nothing when disabled.</summary>
internal static class Log
{
    internal static readonly Action<ILogger, string, int, string, Exception?> PagemapRegistered =
        LoggerMessage.Define<string, int, string>(LogLevel.Debug, new EventId(8001, nameof(PagemapRegistered)),
            "Device {Device} registered pagemap {Index} at {Range}");

    internal static readonly Action<ILogger, string, int, Errno, Exception?> PagemapRegistrationFailed =
        LoggerMessage.Define<string, int, Errno>(LogLevel.Warning, new EventId(8002, nameof(PagemapRegistrationFailed)),
            "Device {Device} could not register pagemap {Index}: {Error}; allocations get fewer pages");

    internal static readonly Action<ILogger, string, int, Exception?> PagemapsRemoved =
        LoggerMessage.Define<string, int>(LogLevel.Debug, new EventId(8003, nameof(PagemapsRemoved)),
            "Device {Device} removed its {Count} pagemaps");

    internal static readonly Action<ILogger, string, int, Exception?> FaultBufferOverflow =
        LoggerMessage.Define<string, int>(LogLevel.Warning, new EventId(8004, nameof(FaultBufferOverflow)),
            "Device {Device} fault buffer ({Entries} entries) overflowed; faults are dropped until it drains");
}
