namespace Hmm.Cli.Tracing;

/// <summary>One trace read for plotting: its statistics and its binned series, from a single streaming pass.</summary>
internal sealed class TraceRun
{
    private TraceRun(string path, TraceStatistics statistics, TraceTimeline timeline)
    {
        Path = path;
        Name = System.IO.Path.GetFileNameWithoutExtension(path);
        Statistics = statistics;
        Timeline = timeline;
    }

    public string Path { get; }

    /// <summary>The run's name in charts and the summary: the file name without its extension.</summary>
    public string Name { get; }

    public TraceStatistics Statistics { get; }

    public TraceTimeline Timeline { get; }

    public static async Task<TraceRun> ReadAsync(string path, CancellationToken cancellationToken)
    {
        var statistics = new TraceStatistics();
        var timeline = new TraceTimeline();
        await TraceCommand.ReadTraceAsync(path, [statistics, timeline], cancellationToken).ConfigureAwait(false);

        statistics.Complete();
        return new TraceRun(path, statistics, timeline);
    }
}
