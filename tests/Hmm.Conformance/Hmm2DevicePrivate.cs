namespace Hmm.Conformance;

/// <summary>The selftests' <c>hmm2_device_private</c> variant: <c>/dev/hmm_dmirror0</c> and <c>1</c>, device-private memory.</summary>
public sealed class Hmm2DevicePrivate() : Hmm2Tests(0, 1);
