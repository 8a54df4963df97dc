using FluentAssertions;

namespace Hmm.Conformance;

/// <summary>The selftests' per-int <c>ASSERT_EQ(ptr[i], ...)</c> loops, reporting the first int that differs.</summary>
internal static class Expect
{
    /// <summary>Every int <c>i</c> of <paramref name="actual"/> equals <c>expected(first + i)</c>.</summary>
    /// <param name="actual">The ints read.</param>
    /// <param name="expected">The pattern, by int index.</param>
    /// <param name="what">What was read, for the failure message.</param>
    /// <param name="first">The pattern index of <c>actual[0]</c>.</param>
    public static void Ints(ReadOnlySpan<int> actual, Func<int, int> expected, string what, int first = 0)
    {
        for (int i = 0; i < actual.Length; i++)
        {
            int want = expected(first + i);
            if (actual[i] != want)
            {
                actual[i].Should().Be(want, $"{what}: int {first + i} (page {(first + i) * sizeof(int) / PageSize.Bytes}) must hold the selftest's pattern");
                return;
            }
        }
    }

    /// <summary>Every byte of <paramref name="actual"/> equals <paramref name="value"/>.</summary>
    public static void Bytes(ReadOnlySpan<byte> actual, byte value, string what)
    {
        int index = actual.IndexOfAnyExcept(value);
        index.Should().Be(-1, $"{what}: every byte must still be 0x{value:x2}");
    }
}
