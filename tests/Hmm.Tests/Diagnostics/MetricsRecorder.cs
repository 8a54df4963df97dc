using System.Diagnostics.Metrics;
using Xunit;

namespace Hmm.Tests.Diagnostics;

/// <summary>
/// Runs its tests with no other test in parallel. The instruments are process-wide, so a listener also hears every
/// other test that runs meanwhile; alone, the measurements a test sees are its own and can be asserted exactly.
/// </summary>
[CollectionDefinition(nameof(MetricsCollection), DisableParallelization = true)]
public class MetricsCollection;

/// <summary>One measurement as a listener received it.</summary>
/// <param name="Instrument">The instrument's name.</param>
/// <param name="Value">The value recorded (a counter's increment, a histogram's sample).</param>
/// <param name="Tags">The attributes, by key.</param>
internal sealed record RecordedMeasurement(string Instrument, long Value, IReadOnlyDictionary<string, object?> Tags);

/// <summary>
/// A <see cref="MeterListener"/> on every meter named <see cref="HmmMetrics.MeterName"/> (the core's, the drivers',
/// the simulated GPU's) that keeps each instrument published and each measurement recorded while it lives.
/// </summary>
internal sealed class MetricsRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Instrument> _instruments = [];
    private readonly List<RecordedMeasurement> _measurements = [];

    public MetricsRecorder()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == HmmMetrics.MeterName)
            {
                lock (_lock)
                {
                    _instruments[instrument.Name] = instrument;
                }

                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var copy = new Dictionary<string, object?>(tags.Length);
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                copy[tag.Key] = tag.Value;
            }

            lock (_lock)
            {
                _measurements.Add(new RecordedMeasurement(instrument.Name, value, copy));
            }
        });
        _listener.Start();
    }

    /// <summary>Every instrument of the meters named Hmm published so far, by name.</summary>
    public IReadOnlyDictionary<string, Instrument> Instruments
    {
        get
        {
            lock (_lock)
            {
                return new Dictionary<string, Instrument>(_instruments);
            }
        }
    }

    /// <summary>The measurements of one instrument, in the order they came.</summary>
    public IReadOnlyList<RecordedMeasurement> Of(string instrument)
    {
        lock (_lock)
        {
            return _measurements.Where(m => m.Instrument == instrument).ToList();
        }
    }

    /// <summary>The sum of the measurements of <paramref name="instrument"/> that carry every given attribute.</summary>
    public long Sum(string instrument, params (string Key, string Value)[] tags) =>
        Of(instrument).Where(m => tags.All(t => m.Tags.TryGetValue(t.Key, out object? v) && Equals(v, t.Value))).Sum(m => m.Value);

    /// <summary>The unit of a published instrument.</summary>
    public string? UnitOf(string instrument) => Instruments[instrument].Unit;

    /// <summary>Forgets the measurements so far (set-up work a test does not assert on).</summary>
    public void Clear()
    {
        lock (_lock)
        {
            _measurements.Clear();
        }
    }

    public void Dispose() => _listener.Dispose();
}
