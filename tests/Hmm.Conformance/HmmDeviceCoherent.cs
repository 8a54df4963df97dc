using Xunit.Abstractions;

namespace Hmm.Conformance;

/// <summary>The selftests' <c>hmm_device_coherent</c> variant: <c>/dev/hmm_dmirror2</c>, device-coherent memory.</summary>
public sealed class HmmDeviceCoherent(ITestOutputHelper output) : HmmTests(2, output);
