using Xunit;

namespace Hmm.Tests.Diagnostics.Trace;

/// <summary>Runs its tests with no other test in parallel, so that process-wide allocation figures are theirs alone.</summary>
[CollectionDefinition(nameof(TraceStreamingCollection), DisableParallelization = true)]
public class TraceStreamingCollection;
