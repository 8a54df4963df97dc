using System.Globalization;
using System.Text;

namespace Hmm.Cli.Tracing;

/// <summary>
/// Writes a trace as CSV (RFC 4180: a header row, comma-separated fields, CRLF line ends, fields holding a comma,
/// a quote or a line break quoted with quotes doubled), one row per event of a known kind, streaming. Columns:
/// the common fields, the raw payload words, and a "detail" column with the decoded payload
/// ("name=value; ..."), every kind of the format included. Kinds this tool does not know are skipped and counted in <see cref="Skipped"/>.
/// </summary>
internal sealed class CsvExporter : ITraceConsumer
{
    public const string Header = "sequence,kind,virtual_ns,end_ns,wall_ticks,device,engine,thread,flags,arg,a,b,c,detail";

    private readonly TextWriter _output;
    private readonly StringBuilder _detail = new();
    private readonly DetailSink _sink;

    public CsvExporter(TextWriter output)
    {
        _output = output;
        _sink = new DetailSink(_detail);
        _output.Write(Header);
        _output.Write("\r\n");
    }

    public long Rows { get; private set; }

    public long Skipped { get; private set; }

    public void Add(in TraceEvent traceEvent)
    {
        if (!TraceEventFields.IsKnown(traceEvent.Kind))
        {
            Skipped++;
            return;
        }

        WriteInteger(traceEvent.Sequence);
        _output.Write(',');
        _output.Write(TraceEventFields.KindName(traceEvent.Kind));
        _output.Write(',');
        WriteInteger(traceEvent.VirtualNs);
        _output.Write(',');
        if (TraceEventFields.EndNs(in traceEvent) is long end)
        {
            WriteInteger(end);
        }

        _output.Write(',');
        WriteInteger(traceEvent.WallTicks);
        _output.Write(',');
        WriteInteger(traceEvent.Device);
        _output.Write(',');
        _output.Write(EngineName(traceEvent.Engine));
        _output.Write(',');
        WriteInteger(traceEvent.ThreadId);
        _output.Write(',');
        WriteInteger(traceEvent.Flags);
        _output.Write(',');
        WriteInteger(traceEvent.Arg);
        _output.Write(',');
        WriteHex(traceEvent.A);
        _output.Write(',');
        WriteHex(traceEvent.B);
        _output.Write(',');
        WriteHex(traceEvent.C);
        _output.Write(',');
        _detail.Clear();
        TraceEventFields.Describe(in traceEvent, _sink);
        WriteField(_detail);
        _output.Write("\r\n");
        Rows++;
    }

    private void WriteField(StringBuilder field)
    {
        bool quote = false;
        foreach (ReadOnlyMemory<char> chunk in field.GetChunks())
        {
            quote |= chunk.Span.IndexOfAny(",\"\r\n") >= 0;
        }

        if (!quote)
        {
            foreach (ReadOnlyMemory<char> chunk in field.GetChunks())
            {
                _output.Write(chunk.Span);
            }

            return;
        }

        _output.Write('"');
        foreach (ReadOnlyMemory<char> chunk in field.GetChunks())
        {
            foreach (char c in chunk.Span)
            {
                if (c == '"')
                {
                    _output.Write('"');
                }

                _output.Write(c);
            }
        }

        _output.Write('"');
    }

    private void WriteInteger(long value)
    {
        Span<char> text = stackalloc char[20];
        value.TryFormat(text, out int written, provider: CultureInfo.InvariantCulture);
        _output.Write(text[..written]);
    }

    private void WriteHex(ulong value)
    {
        Span<char> text = stackalloc char[18];
        text[0] = '0';
        text[1] = 'x';
        value.TryFormat(text[2..], out int written, "x", CultureInfo.InvariantCulture);
        _output.Write(text[..(written + 2)]);
    }

    private static string EngineName(TraceEngine engine) => engine switch
    {
        TraceEngine.Cpu => "cpu",
        TraceEngine.FaultUnit => "fault-unit",
        TraceEngine.CopyEngine => "copy-engine",
        TraceEngine.Compute => "compute",
        _ => "unknown",
    };

    private sealed class DetailSink(StringBuilder detail) : ITraceFieldSink
    {
        public void Hex(string name, ulong value) => Separator().Append(name).Append("=0x").Append(value.ToString("x", CultureInfo.InvariantCulture));

        public void Number(string name, long value) => Separator().Append(name).Append('=').Append(value.ToString(CultureInfo.InvariantCulture));

        public void Text(string name, string value) => Separator().Append(name).Append('=').Append(value);

        private StringBuilder Separator() => detail.Length == 0 ? detail : detail.Append("; ");
    }
}
