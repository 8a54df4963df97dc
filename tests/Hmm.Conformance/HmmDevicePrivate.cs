using Xunit.Abstractions;

namespace Hmm.Conformance;

/// <summary>The selftests' <c>hmm_device_private</c> variant: <c>/dev/hmm_dmirror0</c>, device-private memory.</summary>
public sealed class HmmDevicePrivate(ITestOutputHelper output) : HmmTests(0, output);
