using System.Diagnostics.Metrics;
using System.Globalization;

namespace Hmm.Cli;

/// <summary>
/// hmmsim --metrics: a <see cref="MeterListener"/> on every meter named <see cref="HmmMetrics.MeterName"/> (the
/// core's, the drivers', the simulated GPU's), started before the run, that sums each instrument per attribute set
/// (counters: the sum; histograms: count, sum, min and max). <see cref="Stop"/> ends listening and gives the series.
/// </summary>
/// <remarks>
/// A measurement finds its instrument's state through the listener's state argument and its series by comparing
/// attribute pairs, so after the first measurement of each attribute set nothing is allocated. Every published
/// instrument is listed, with a zero row when nothing was measured.
/// </remarks>
internal sealed class MetricsCollector : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly Lock _lock = new();
    private readonly List<InstrumentState> _instruments = [];

    public MetricsCollector()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name != HmmMetrics.MeterName)
            {
                return;
            }

            var state = new InstrumentState(instrument);
            lock (_lock)
            {
                _instruments.Add(state);
            }

            listener.EnableMeasurementEvents(instrument, state);
        };
        _listener.SetMeasurementEventCallback<long>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.Start();
    }

    /// <summary>Stops listening and returns every series, by instrument name then attributes.</summary>
    public IReadOnlyList<MetricSeries> Stop()
    {
        _listener.Dispose();
        InstrumentState[] instruments;
        lock (_lock)
        {
            instruments = [.. _instruments];
        }

        var series = new List<MetricSeries>();
        foreach (InstrumentState state in instruments)
        {
            state.AddSeriesTo(series);
        }

        series.Sort(static (a, b) =>
        {
            int byName = string.CompareOrdinal(a.Instrument, b.Instrument);
            return byName != 0 ? byName : string.CompareOrdinal(a.AttributeText, b.AttributeText);
        });
        return series;
    }

    /// <summary>Stops listening (a second call, or one after <see cref="Stop"/>, does nothing).</summary>
    public void Dispose() => _listener.Dispose();

    /// <summary>One instrument's series; its lock is taken by whichever thread records.</summary>
    private sealed class InstrumentState(Instrument instrument)
    {
        private readonly Lock _lock = new();
        private readonly List<Series> _series = [];
        private readonly bool _isHistogram = instrument is Histogram<long>;

        public void Record(long value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            lock (_lock)
            {
                Series series = Find(tags);
                series.Count++;
                series.Sum += value;
                series.Min = Math.Min(series.Min, value);
                series.Max = Math.Max(series.Max, value);
            }
        }

        public void AddSeriesTo(List<MetricSeries> into)
        {
            // Call sites may order one attribute set differently: series with the same sorted attributes merge.
            var merged = new Dictionary<string, MetricSeries>(StringComparer.Ordinal);
            lock (_lock)
            {
                foreach (Series series in _series)
                {
                    KeyValuePair<string, string>[] attributes = series.Tags
                        .Select(t => new KeyValuePair<string, string>(t.Key, Convert.ToString(t.Value, CultureInfo.InvariantCulture) ?? string.Empty))
                        .OrderBy(t => t.Key, StringComparer.Ordinal)
                        .ToArray();
                    var point = new MetricSeries(instrument.Name, instrument.Unit, _isHistogram, attributes, series.Count, series.Sum, series.Min, series.Max);
                    merged[point.AttributeText] = merged.TryGetValue(point.AttributeText, out MetricSeries? other) ? other.Merge(point) : point;
                }
            }

            if (merged.Count == 0)
            {
                into.Add(new MetricSeries(instrument.Name, instrument.Unit, _isHistogram, [], 0, 0, 0, 0));
            }

            into.AddRange(merged.Values);
        }

        private Series Find(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            foreach (Series series in _series)
            {
                if (series.Matches(tags))
                {
                    return series;
                }
            }

            var added = new Series(tags.ToArray());
            _series.Add(added);
            return added;
        }
    }

    private sealed class Series(KeyValuePair<string, object?>[] tags)
    {
        public KeyValuePair<string, object?>[] Tags { get; } = tags;

        public long Count { get; set; }

        public long Sum { get; set; }

        public long Min { get; set; } = long.MaxValue;

        public long Max { get; set; } = long.MinValue;

        public bool Matches(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (tags.Length != Tags.Length)
            {
                return false;
            }

            for (int i = 0; i < tags.Length; i++)
            {
                if (!string.Equals(tags[i].Key, Tags[i].Key, StringComparison.Ordinal) || !Equals(tags[i].Value, Tags[i].Value))
                {
                    return false;
                }
            }

            return true;
        }
    }
}
