namespace Hmm.Cli.Tracing;

/// <summary>Something that looks at each event of a trace once, in file order (an exporter, the statistics, the plot series).</summary>
internal interface ITraceConsumer
{
    void Add(in TraceEvent traceEvent);
}
