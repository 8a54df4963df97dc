using Microsoft.Extensions.Logging;

namespace Hmm;

// The Mirroring layer's log events, kept in their own file of the one Log class (event ids 200-209) so that
// branches adding events elsewhere do not collide.
internal static partial class Log
{
    [LoggerMessage(EventId = 200, Level = LogLevel.Warning, Message = "Interval notifier {Subscription} returned false for a blockable invalidation of [{Start:x}, {End:x}) ({Event}); ignored (kernel: WARN)")]
    public static partial void IntervalBlockableFailure(ILogger logger, MmuIntervalNotifier subscription, ulong start, ulong end, MmuNotifierEvent @event);

    [LoggerMessage(EventId = 201, Level = LogLevel.Warning, Message = "Notifier {Ops} returned false from a blockable invalidate_range_start of [{Start:x}, {End:x}) ({Event}); ignored (kernel: WARN)")]
    public static partial void ClassicBlockableFailure(ILogger logger, IMmuNotifierOps ops, ulong start, ulong end, MmuNotifierEvent @event);

    [LoggerMessage(EventId = 202, Level = LogLevel.Information, Message = "Address space notifiers released: {IntervalCount} interval subscription(s), {NotifierCount} notifier(s)")]
    public static partial void NotifiersReleased(ILogger logger, int intervalCount, int notifierCount);
}
