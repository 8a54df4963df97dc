namespace Hmm;

/// <summary>
/// The direction of a copy or a migration in a <see cref="TraceEvent"/>. Stored in the record's flags; part of
/// the file format.
/// </summary>
public enum TraceDirection : ushort
{
    /// <summary>Not recorded.</summary>
    Unknown = 0,

    /// <summary>System memory to device memory.</summary>
    HostToDevice = 1,

    /// <summary>Device memory to system memory.</summary>
    DeviceToHost = 2,

    /// <summary>Device memory to device memory.</summary>
    DeviceToDevice = 3,
}
