using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Hmm.Cli;

/// <summary>hmmsim --metrics output: a table after the summary, or a "metrics" object in the JSON report.</summary>
internal static class MetricsRenderer
{
    /// <summary>Writes the table: instrument, unit, attributes (one per line), value.</summary>
    public static void Write(IReadOnlyList<MetricSeries> series, TextWriter writer, bool interactive)
    {
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = interactive ? InteractionSupport.Yes : InteractionSupport.No,
        });
        if (!interactive)
        {
            console.Profile.Width = 140;
        }

        var table = new Table().Border(TableBorder.Rounded).Title("Metrics (meter Hmm)")
            .AddColumn("Instrument").AddColumn("Unit").AddColumn("Attributes").AddColumn(new TableColumn("Value").RightAligned());
        foreach (MetricSeries point in series)
        {
            table.AddRow(
                new IRenderable[]
                {
                    new Text(point.Instrument), new Text(point.Unit ?? string.Empty),
                    new Text(string.Join('\n', point.Attributes.Select(a => $"{a.Key}={a.Value}"))), new Text(Value(point)),
                });
        }

        console.Write(table);
    }

    /// <summary>Writes <c>"metrics": { instrument: { unit, type, points: [...] } }</c> into an open JSON object.</summary>
    public static void WriteJson(Utf8JsonWriter json, IReadOnlyList<MetricSeries> series)
    {
        json.WriteStartObject("metrics");
        foreach (IGrouping<string, MetricSeries> instrument in series.GroupBy(s => s.Instrument))
        {
            MetricSeries first = instrument.First();
            json.WriteStartObject(instrument.Key);
            json.WriteString("unit", first.Unit);
            json.WriteString("type", first.IsHistogram ? "histogram" : "counter");
            json.WriteStartArray("points");
            foreach (MetricSeries point in instrument)
            {
                json.WriteStartObject();
                json.WriteStartObject("attributes");
                foreach (KeyValuePair<string, string> attribute in point.Attributes)
                {
                    json.WriteString(attribute.Key, attribute.Value);
                }

                json.WriteEndObject();
                if (point.IsHistogram)
                {
                    json.WriteNumber("count", point.Count);
                    json.WriteNumber("sum", point.Sum);
                    json.WriteNumber("min", point.Count == 0 ? 0 : point.Min);
                    json.WriteNumber("max", point.Count == 0 ? 0 : point.Max);
                }
                else
                {
                    json.WriteNumber("value", point.Sum);
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        json.WriteEndObject();
    }

    private static string Value(MetricSeries point) => !point.IsHistogram
        ? point.Sum.ToString("N0", CultureInfo.InvariantCulture)
        : point.Count == 0
            ? "count 0"
            : string.Create(CultureInfo.InvariantCulture, $"count {point.Count:N0}, sum {point.Sum:N0}, min {point.Min:N0}, max {point.Max:N0}");
}
