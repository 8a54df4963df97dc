namespace Hmm.Conformance;

/// <summary>The selftests' <c>hmm2_device_coherent</c> variant: <c>/dev/hmm_dmirror2</c> and <c>3</c>, device-coherent memory.</summary>
public sealed class Hmm2DeviceCoherent() : Hmm2Tests(2, 3);
