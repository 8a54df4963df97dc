namespace Hmm.Conformance;

/// <summary>The dmirror ioctls the selftests issue through <c>hmm_dmirror_cmd</c> (HMM_DMIRROR_*).</summary>
internal enum DmirrorRequest
{
    Read,
    Write,
    MigrateToDevice,
    MigrateToSystem,
    Snapshot,
    Exclusive,
    CheckExclusive,
    Release,
}
