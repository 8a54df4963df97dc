namespace Hmm.Cli.Tracing;

/// <summary>Receives the decoded payload fields of one event (see <see cref="TraceEventFields.Describe"/>).</summary>
internal interface ITraceFieldSink
{
    /// <summary>An address or page frame, shown in hexadecimal.</summary>
    void Hex(string name, ulong value);

    /// <summary>A count, a size or a time.</summary>
    void Number(string name, long value);

    /// <summary>An enum value by name.</summary>
    void Text(string name, string value);
}
