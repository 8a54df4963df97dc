using Spectre.Console;

namespace Hmm.Cli;

/// <summary>hmmsim's entry point: see <see cref="HmmSimCommand"/>.</summary>
internal static class Program
{
    public static Task<int> Main(string[] args)
    {
        bool interactive = !Console.IsOutputRedirected && !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        return new HmmSimCommand(Console.Out, Console.Error, interactive).InvokeAsync(args);
    }
}
