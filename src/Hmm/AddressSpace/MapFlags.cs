namespace Hmm;

/// <summary>Flags of <see cref="Mm.Mmap"/> (<c>MAP_*</c>, same values).</summary>
[Flags]
public enum MapFlags
{
    /// <summary>No flag; invalid alone (one of <see cref="Shared"/> or <see cref="Private"/> is required).</summary>
    None = 0,

    /// <summary><c>MAP_SHARED</c>: writes are visible to every mapping of the same memory.</summary>
    Shared = 0x01,

    /// <summary><c>MAP_PRIVATE</c>: copy-on-write.</summary>
    Private = 0x02,

    /// <summary>
    /// <c>MAP_SHARED_VALIDATE</c> (<see cref="Shared"/> | <see cref="Private"/>): a shared file mapping whose other flags
    /// are all checked, failing with EOPNOTSUPP on one the simulator does not know. Not for anonymous memory (EINVAL).
    /// </summary>
    SharedValidate = Shared | Private,

    /// <summary><c>MAP_FIXED</c>: map exactly at the address, replacing what is there.</summary>
    Fixed = 0x10,

    /// <summary><c>MAP_ANONYMOUS</c>: not backed by a file; reads of untouched memory see zeros.</summary>
    Anonymous = 0x20,

    /// <summary><c>MAP_FIXED_NOREPLACE</c>: map exactly at the address, failing with EEXIST if it is in use.</summary>
    FixedNoReplace = 0x100000,
}
