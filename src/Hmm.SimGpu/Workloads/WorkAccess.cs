using Hmm.Devices;

namespace Hmm.SimGpu;

/// <summary>One access of a warp's work item: where, how many bytes, what kind, and where its bytes sit in the warp's scratch pages.</summary>
internal readonly record struct WorkAccess(ulong Address, int Length, DeviceAccessKind Kind, int ScratchOffset);
