using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.CompilerServices;
using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Mirroring;

/// <summary>
/// The Mirroring hot paths pass values to out-of-line throw helpers and build no message themselves, as
/// dotnet/runtime's ThrowHelper pattern asks.
/// </summary>
public class MirroringThrowHelperTests
{
    private const BindingFlags AnyInstance = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.DeclaredOnly;

    public static TheoryData<string, string> HotPaths => new()
    {
        { nameof(HmmRange), nameof(HmmRange.Fault) },
        { nameof(HmmRange), "Validate" },
        { nameof(MmuNotifierSubscriptions), "ReadBegin" },
        { nameof(MmuNotifierSubscriptions), "InvalidateRangeStart" },
        { nameof(MmuNotifierSubscriptions), "InvalidateRangeEnd" },
        { nameof(MmuNotifierSubscriptions), "EndInvalidationChecked" },
        { nameof(MmuNotifierSubscriptions), nameof(MmuNotifierSubscriptions.Insert) },
        { nameof(MmuIntervalNotifier), nameof(MmuIntervalNotifier.SetSequence) },
        { nameof(MmuIntervalNotifier), "get_Mm" },
    };

    [Theory]
    [MemberData(nameof(HotPaths))]
    public void HotPathsBuildNoMessageInline(string typeName, string methodName)
    {
        Type type = typeof(HmmRange).Assembly.GetType($"Hmm.{typeName}")!;
        MethodInfo method = type.GetMethods(AnyInstance).Single(m => m.Name == methodName);
        MethodBody body = method.GetMethodBody()!;

        body.LocalVariables.Select(l => l.LocalType).Should().NotContain(typeof(DefaultInterpolatedStringHandler), $"{typeName}.{methodName} must pass values to a throw helper");
    }

    [Fact]
    public void EveryThrowHelperIsNeverInlinedAndDoesNotReturn()
    {
        Type helper = typeof(HmmRange).Assembly.GetType("Hmm.MirroringThrowHelper")!;
        MethodInfo[] methods = helper.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.DeclaredOnly);

        methods.Should().NotBeEmpty();
        methods.Should().OnlyContain(m => (m.MethodImplementationFlags & MethodImplAttributes.NoInlining) != 0, "a helper inlined into its caller brings the message formatting back");
        methods.Should().OnlyContain(m => m.GetCustomAttribute<DoesNotReturnAttribute>() != null);
    }
}
