using System.Text;
using System.Text.Json;
using Hmm.SimGpu;

namespace Hmm.Cli;

/// <summary>The report as JSON (--json): camelCase names, sizes in bytes, times in nanoseconds or seconds as named.</summary>
internal static class JsonReport
{
    public static string Write(SimulationReport report, IReadOnlyList<MetricSeries>? metrics = null)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            SimulationOptions options = report.Options;
            json.WriteStartObject();
            json.WriteString("workload", options.Workload.ToString().ToLowerInvariant());
            json.WriteNumber("workingSetBytes", options.WorkingSetBytes);
            json.WriteNumber("workingSetPages", report.WorkingSetPages);
            json.WriteNumber("deviceMemoryBytes", report.DeviceMemoryBytes);
            json.WriteNumber("devices", options.Devices);
            json.WriteNumber("oversubscription", report.Oversubscription);
            json.WriteNumber("batchSize", options.BatchSize);
            json.WriteNumber("engines", options.Engines);
            json.WriteNumber("warpsPerEngine", options.WarpsPerEngine);
            json.WriteNumber("bytesPerItem", options.BytesPerItem);
            json.WriteNumber("iterations", options.Iterations);
            json.WriteNumber("seed", options.Seed);
            json.WriteBoolean("metadataOnly", options.MetadataOnly);
            json.WriteNumber("pagesTouched", report.PagesTouched);
            json.WriteNumber("deviceFaults", report.DeviceFaults);
            json.WriteNumber("faultBatches", report.FaultBatches);
            json.WriteNumber("duplicatesMerged", report.DuplicatesMerged);
            json.WriteNumber("cpuFaults", report.CpuFaults);
            json.WriteNumber("pagesToDevice", report.PagesToDevice);
            json.WriteNumber("bytesToDevice", report.BytesToDevice);
            json.WriteNumber("pagesToRam", report.PagesToRam);
            json.WriteNumber("bytesToRam", report.BytesToRam);
            json.WriteNumber("evictedBlocks", report.EvictedBlocks);
            json.WriteNumber("evictedPages", report.EvictedPages);
            json.WriteNumber("simulatedNanoseconds", report.SimulatedNanoseconds);
            json.WriteNumber("effectiveBandwidthBytesPerSecond", report.EffectiveBandwidth);
            json.WriteNumber("wallTimeSeconds", report.WallTime.TotalSeconds);
            json.WriteNumber("pagesPerWallSecond", report.PagesPerWallSecond);
            json.WriteString("dataCheck", report.DataCheck.ToString().ToLowerInvariant());
            json.WriteNumber("pagesChecked", report.PagesChecked);
            json.WriteNumber("dataErrors", report.DataErrors);
            json.WriteStartArray("phases");
            foreach (SimulationPhaseReport phase in report.Phases)
            {
                json.WriteStartObject();
                json.WriteString("name", phase.Name);
                json.WriteString("description", phase.Description);
                json.WriteNumber("workUnits", phase.WorkUnits);
                json.WriteNumber("simulatedNanoseconds", phase.SimulatedNanoseconds);
                json.WriteNumber("deviceFaults", phase.DeviceFaults);
                json.WriteNumber("cpuFaults", phase.CpuFaults);
                json.WriteNumber("pagesToDevice", phase.PagesToDevice);
                json.WriteNumber("pagesToRam", phase.PagesToRam);
                json.WriteNumber("evictedPages", phase.EvictedPages);
                json.WriteNumber("wallTimeSeconds", phase.WallTime.TotalSeconds);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            if (metrics is not null)
            {
                MetricsRenderer.WriteJson(json, metrics);
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
