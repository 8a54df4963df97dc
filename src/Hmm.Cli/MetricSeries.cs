namespace Hmm.Cli;

/// <summary>
/// One instrument's measurements with one attribute set, as hmmsim --metrics prints them: a counter's value is
/// <see cref="Sum"/>; a histogram has <see cref="Count"/>, <see cref="Sum"/>, <see cref="Min"/> and <see cref="Max"/>.
/// </summary>
internal sealed record MetricSeries(
    string Instrument,
    string? Unit,
    bool IsHistogram,
    IReadOnlyList<KeyValuePair<string, string>> Attributes,
    long Count,
    long Sum,
    long Min,
    long Max)
{
    /// <summary>The attributes as <c>key=value</c> pairs in key order, comma separated; empty when there are none.</summary>
    public string AttributeText { get; } = string.Join(", ", Attributes.Select(a => $"{a.Key}={a.Value}"));

    /// <summary>The two series of one attribute set, added together.</summary>
    public MetricSeries Merge(MetricSeries other) => this with
    {
        Count = Count + other.Count,
        Sum = Sum + other.Sum,
        Min = Math.Min(Min, other.Min),
        Max = Math.Max(Max, other.Max),
    };
}
