namespace Hmm.Devices;

/// <summary>A copy batch on the virtual clock.</summary>
/// <param name="Start">Virtual nanoseconds at which the engine started the batch.</param>
/// <param name="End">Virtual nanoseconds at which the last byte landed.</param>
/// <param name="Bytes">Bytes moved.</param>
/// <param name="Transfers">How many contiguous transfers the batch was cut into.</param>
public readonly record struct CopyCompletion(long Start, long End, long Bytes, int Transfers);
