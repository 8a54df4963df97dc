namespace Hmm.SimGpu;

/// <summary>
/// The device-access counters of one address space: plain longs written only under the space's gate, which every
/// access already holds, so counting an access costs no atomic. <see cref="SimGpuCounters.Snapshot"/> sums them
/// over the device's spaces.
/// </summary>
/// <remarks>Concurrency model: written under the owning <see cref="SimAddressSpace.Gate"/>; read without it by a
/// snapshot, which is therefore exact once the accesses it should count have returned.</remarks>
internal sealed class SimAccessCounters
{
    internal long Accesses;
    internal long AccessesStopped;
    internal long BytesAccessed;
}
