using System.Reflection;
using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Mirroring;

/// <summary>
/// The Mirroring layer's public surface, member by member: what a driver calls (the kernel's
/// <c>mmu_interval_notifier_insert/remove</c>, <c>read_begin/read_retry/check_retry</c>, <c>set_seq</c>,
/// <c>mmu_notifier_register/unregister</c>, <c>hmm_range_fault</c>) and nothing of the machinery the address space
/// drives. A change here is a reviewed change of the contract.
/// </summary>
public class MirroringPublicSurfaceTests
{
    private static readonly Type[] s_types =
    [
        typeof(HmmPfn), typeof(HmmRange), typeof(HmmRangeRequest), typeof(IMmuIntervalNotifierOps), typeof(IMmuNotifierOps),
        typeof(MmuIntervalNotifier), typeof(MmuNotifier), typeof(MmuNotifierSubscriptions),
    ];

    private static readonly string[] s_expected =
    [
        "HmmPfn.DmaMapped: UInt64",
        "HmmPfn.Error: UInt64",
        "HmmPfn.FlagsMask: UInt64",
        "HmmPfn.InOutFlags: UInt64",
        "HmmPfn.MapOrder(UInt64) -> Int32",
        "HmmPfn.OrderShift: Int32",
        "HmmPfn.P2PDma: UInt64",
        "HmmPfn.P2PDmaBus: UInt64",
        "HmmPfn.RequestFault: UInt64",
        "HmmPfn.RequestWrite: UInt64",
        "HmmPfn.ToPfn(UInt64) -> Pfn",
        "HmmPfn.Valid: UInt64",
        "HmmPfn.Write: UInt64",
        "HmmRange.DefaultFlags: UInt64 get set",
        "HmmRange.DefaultTimeout: TimeSpan",
        "HmmRange.DevicePrivateOwner: Object get set",
        "HmmRange.End: UInt64 get set",
        "HmmRange.Fault() -> Errno",
        "HmmRange.HmmPfns: Span`1 get set",
        "HmmRange.Notifier: MmuIntervalNotifier get set",
        "HmmRange.NotifierSequence: UInt64 get set",
        "HmmRange.PfnFlagsMask: UInt64 get set",
        "HmmRange.Start: UInt64 get set",
        "HmmRangeRequest(MmuIntervalNotifier, UInt64, UInt64)",
        "HmmRangeRequest.CheckRetry() -> Boolean",
        "HmmRangeRequest.DefaultFlags: UInt64 get set",
        "HmmRangeRequest.DevicePrivateOwner: Object get set",
        "HmmRangeRequest.End: UInt64 get",
        "HmmRangeRequest.Fault() -> Errno",
        "HmmRangeRequest.HmmPfns: Span`1 get",
        "HmmRangeRequest.Notifier: MmuIntervalNotifier get",
        "HmmRangeRequest.NotifierSequence: UInt64 get set",
        "HmmRangeRequest.PfnFlagsMask: UInt64 get set",
        "HmmRangeRequest.ReadBegin() -> UInt64",
        "HmmRangeRequest.ReadRetry() -> Boolean",
        "HmmRangeRequest.Start: UInt64 get",
        "IMmuIntervalNotifierOps.Invalidate(MmuIntervalNotifier, MmuNotifierRange&, UInt64) -> Boolean",
        "IMmuNotifierOps.InvalidateRangeEnd(MmuNotifierRange&) -> Void",
        "IMmuNotifierOps.InvalidateRangeStart(MmuNotifierRange&) -> Boolean",
        "IMmuNotifierOps.Release() -> Void",
        "MmuIntervalNotifier.CheckRetry(UInt64) -> Boolean",
        "MmuIntervalNotifier.End: UInt64 get",
        "MmuIntervalNotifier.Insert(Mm, UInt64, UInt64, IMmuIntervalNotifierOps) -> MmuIntervalNotifier",
        "MmuIntervalNotifier.Last: UInt64 get",
        "MmuIntervalNotifier.Mm: Mm get",
        "MmuIntervalNotifier.ReadBegin() -> UInt64",
        "MmuIntervalNotifier.ReadRetry(UInt64) -> Boolean",
        "MmuIntervalNotifier.Remove() -> Void",
        "MmuIntervalNotifier.SetSequence(UInt64) -> Void",
        "MmuIntervalNotifier.Start: UInt64 get",
        "MmuIntervalNotifier.ToString() -> String",
        "MmuNotifier.Subscriptions: MmuNotifierSubscriptions get",
        "MmuNotifierSubscriptions.IgnoredBlockableFailures: Int64 get",
        "MmuNotifierSubscriptions.Insert(UInt64, UInt64, IMmuIntervalNotifierOps) -> MmuIntervalNotifier",
        "MmuNotifierSubscriptions.Of(Mm) -> MmuNotifierSubscriptions",
        "MmuNotifierSubscriptions.Register(IMmuNotifierOps) -> MmuNotifier",
        "MmuNotifierSubscriptions.Remove(MmuIntervalNotifier) -> Void",
        "MmuNotifierSubscriptions.Unregister(MmuNotifier) -> Void",
    ];

    [Fact]
    public void TheMirroringSurfaceIsWhatADriverCalls()
    {
        string[] actual = [.. s_types.SelectMany(Describe).Order(StringComparer.Ordinal)];

        actual.Should().Equal(s_expected, "the public surface is:\n" + string.Join("\n", actual.Select(a => $"        \"{a}\",")));
    }

    [Fact]
    public void NoDriverCanStartAnInvalidationOrReleaseAnAddressSpace()
    {
        Type subscriptions = typeof(MmuNotifierSubscriptions);

        subscriptions.GetConstructors(BindingFlags.Public | BindingFlags.Instance).Should().BeEmpty("Of(mm) is the entry point");
        subscriptions.GetMethods(BindingFlags.Public | BindingFlags.Instance)
            .Select(m => m.Name)
            .Should().NotContain(["InvalidateRangeStart", "InvalidateRangeEnd", "Release"]);
        typeof(IMmNotifierChain).IsPublic.Should().BeFalse();
    }

    private static IEnumerable<string> Describe(Type type)
    {
        const BindingFlags flags = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (MemberInfo member in type.GetMembers(flags))
        {
            switch (member)
            {
                case MethodInfo { IsSpecialName: true }:
                    break;
                case MethodInfo method:
                    yield return $"{type.Name}.{method.Name}({string.Join(", ", method.GetParameters().Select(p => p.ParameterType.Name))}) -> {method.ReturnType.Name}";
                    break;
                case ConstructorInfo constructor:
                    yield return $"{type.Name}({string.Join(", ", constructor.GetParameters().Select(p => p.ParameterType.Name))})";
                    break;
                case PropertyInfo property:
                    string accessors = (property.GetMethod?.IsPublic == true ? " get" : string.Empty) + (property.SetMethod?.IsPublic == true ? " set" : string.Empty);
                    yield return $"{type.Name}.{property.Name}: {property.PropertyType.Name}{accessors}";
                    break;
                case FieldInfo field:
                    yield return $"{type.Name}.{field.Name}: {field.FieldType.Name}";
                    break;
                default:
                    yield return $"{type.Name}.{member.Name} ({member.MemberType})";
                    break;
            }
        }
    }
}
