using Microsoft.Extensions.Logging;

namespace Hmm;

// The Migration layer's log events, in their own file of the one Log class (event ids 400-409), one per batch.
internal static partial class Log
{
    [LoggerMessage(EventId = 400, Level = LogLevel.Debug, Message = "{Mm}: migrate_vma_setup [{Start:x}, {End:x}) {Flags}: {CPages} of {NPages} page(s) collected")]
    public static partial void MigrateVmaSetUp(ILogger logger, string mm, ulong start, ulong end, MigrateVmaSelect flags, ulong cPages, ulong nPages);

    [LoggerMessage(EventId = 401, Level = LogLevel.Debug, Message = "migrate finalize: {Migrated} of {Entries} entries migrated")]
    public static partial void MigrationFinalized(ILogger logger, long migrated, int entries);
}
