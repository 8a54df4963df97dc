using Spectre.Console;

namespace Hmm.Cli;

/// <summary>Collects a workload's steps and counters and prints them as tables.</summary>
internal sealed class Report(IAnsiConsole console)
{
    private readonly List<(string Phase, string What)> _steps = [];
    private readonly List<(string Name, string Value)> _counters = [];

    public void Step(string phase, string what) => _steps.Add((phase, what));

    public void Counter(string name, object value) => _counters.Add((name, Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? ""));

    public void Print()
    {
        var steps = new Table().Title("hmmsim: what happened").AddColumn("Phase").AddColumn("Event");
        foreach ((string phase, string what) in _steps)
        {
            steps.AddRow(Markup.Escape(phase), Markup.Escape(what));
        }

        var counters = new Table().Title("Counters").AddColumn("Counter").AddColumn(new TableColumn("Value").RightAligned());
        foreach ((string name, string value) in _counters)
        {
            counters.AddRow(Markup.Escape(name), Markup.Escape(value));
        }

        console.Write(steps);
        console.Write(counters);
    }
}
