using System.Runtime.InteropServices;

namespace Hmm.Conformance;

/// <summary>
/// The process's CPU accesses the selftests make through plain pointers (<c>ptr[i] = i</c>), as
/// <see cref="Mm.Read"/> and <see cref="Mm.Write"/> calls: each faults pages in, breaks copy-on-write, and brings
/// device-private pages back through <c>migrate_to_ram</c> exactly as the pointer access would.
/// </summary>
internal static class Cpu
{
    /// <summary>Stores <c>value(i)</c> into the i-th int from <paramref name="address"/>, for <paramref name="count"/> ints.</summary>
    public static void WriteInts(Mm mm, ulong address, int count, Func<int, int> value)
    {
        var bytes = new byte[checked(count * sizeof(int))];
        Span<int> ints = MemoryMarshal.Cast<byte, int>(bytes.AsSpan());
        for (int i = 0; i < ints.Length; i++)
        {
            ints[i] = value(i);
        }

        mm.Write(address, bytes);
    }

    /// <summary>Loads <paramref name="count"/> ints from <paramref name="address"/>.</summary>
    public static int[] ReadInts(Mm mm, ulong address, int count)
    {
        var ints = new int[count];
        mm.Read(address, MemoryMarshal.AsBytes(ints.AsSpan()));
        return ints;
    }

    /// <summary>Loads one int (<c>*(int *)address</c>).</summary>
    public static int ReadInt(Mm mm, ulong address)
    {
        Span<byte> bytes = stackalloc byte[sizeof(int)];
        mm.Read(address, bytes);
        return MemoryMarshal.Read<int>(bytes);
    }

    /// <summary>Stores one int (<c>*(int *)address = value</c>).</summary>
    public static void WriteInt(Mm mm, ulong address, int value)
    {
        Span<byte> bytes = stackalloc byte[sizeof(int)];
        MemoryMarshal.Write(bytes, in value);
        mm.Write(address, bytes);
    }

    /// <summary>Fills a user buffer (the mirror) with <c>value(i)</c> per int.</summary>
    public static void FillInts(Span<int> ints, Func<int, int> value)
    {
        for (int i = 0; i < ints.Length; i++)
        {
            ints[i] = value(i);
        }
    }
}
