using System.Globalization;

namespace Hmm.Cli;

/// <summary>Sizes on the command line and in the summary: a number with an optional binary unit (64MiB, 16GiB, 1.5G).</summary>
internal static class ByteSize
{
    private static readonly (string Suffix, int Shift)[] s_units =
    [
        ("TIB", 40), ("GIB", 30), ("MIB", 20), ("KIB", 10),
        ("TB", 40), ("GB", 30), ("MB", 20), ("KB", 10),
        ("T", 40), ("G", 30), ("M", 20), ("K", 10), ("B", 0),
    ];

    /// <summary>Parses "4096", "64MiB", "64M", "64MB" (all units are powers of 1024) or "1.5GiB"; the result must be a whole number of bytes.</summary>
    public static bool TryParse(string text, out ulong bytes)
    {
        bytes = 0;
        string trimmed = text.Trim();
        int shift = 0;
        foreach ((string suffix, int unitShift) in s_units)
        {
            if (trimmed.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                trimmed = trimmed[..^suffix.Length].TrimEnd();
                shift = unitShift;
                break;
            }
        }

        if (trimmed.Length == 0 || !decimal.TryParse(trimmed, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal number))
        {
            return false;
        }

        decimal value = number * (1UL << shift);
        if (value != decimal.Truncate(value) || value > ulong.MaxValue)
        {
            return false;
        }

        bytes = (ulong)value;
        return true;
    }

    /// <summary>Formats bytes with the largest binary unit that keeps the number at least 1 ("96 MiB", "10.67 GiB").</summary>
    public static string Format(double bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        int unit = 0;
        while (bytes >= 1024 && unit < units.Length - 1)
        {
            bytes /= 1024;
            unit++;
        }

        return bytes == Math.Floor(bytes)
            ? string.Create(CultureInfo.InvariantCulture, $"{bytes:0} {units[unit]}")
            : string.Create(CultureInfo.InvariantCulture, $"{bytes:0.##} {units[unit]}");
    }
}
