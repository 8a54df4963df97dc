using FluentAssertions;
using Xunit;

namespace Hmm.Tests.Mirroring;

public class IntervalTreeTests
{
    private static readonly MmuNotifierSubscriptions s_owner = new();

    [Fact]
    public void EmptyTreeHasNoOverlaps()
    {
        var tree = new IntervalTree();

        Collect(tree, 0, ulong.MaxValue).Should().BeEmpty();
        tree.Count.Should().Be(0);
    }

    [Fact]
    public void OverlapsAreClosedAtBothEnds()
    {
        var tree = new IntervalTree();
        MmuIntervalNotifier node = Node(10, 20);
        tree.Insert(node);

        Collect(tree, 0, 9).Should().BeEmpty();
        Collect(tree, 0, 10).Should().Equal(node);
        Collect(tree, 20, 30).Should().Equal(node);
        Collect(tree, 21, 30).Should().BeEmpty();
        Collect(tree, 12, 13).Should().Equal(node);
    }

    [Fact]
    public void ReversedQueryFindsNothing()
    {
        var tree = new IntervalTree();
        tree.Insert(Node(0, 100));

        Collect(tree, 50, 49).Should().BeEmpty();
    }

    [Fact]
    public void IntervalsReachingTheTopAddressAreFoundWithoutOverflow()
    {
        var tree = new IntervalTree();
        MmuIntervalNotifier top = Node(ulong.MaxValue, ulong.MaxValue);
        MmuIntervalNotifier belowTop = Node(0, ulong.MaxValue - 1);
        MmuIntervalNotifier whole = Node(0, ulong.MaxValue);
        MmuIntervalNotifier low = Node(0, 0xFFF);
        tree.Insert(low);
        tree.Insert(top);
        tree.Insert(belowTop);
        tree.Insert(whole);
        CheckInvariants(tree, "after inserting intervals that end at the top");

        SameNodes(Collect(tree, ulong.MaxValue, ulong.MaxValue), top, whole);
        SameNodes(Collect(tree, ulong.MaxValue - 1, ulong.MaxValue - 1), belowTop, whole);
        SameNodes(Collect(tree, 0, ulong.MaxValue - 1), low, belowTop, whole);
        SameNodes(Collect(tree, 0x1000, ulong.MaxValue), top, belowTop, whole);
        whole.End.Should().Be(ulong.MaxValue, "one past the top does not fit in 64 bits: End saturates");
        whole.Last.Should().Be(ulong.MaxValue);
        belowTop.End.Should().Be(ulong.MaxValue);
        belowTop.Last.Should().Be(ulong.MaxValue - 1);
        whole.ToString().Should().Be("interval [0x0, 0xffffffffffffffff]", "the closed form is exact at the top");
        belowTop.ToString().Should().Be("interval [0x0, 0xfffffffffffffffe]");

        tree.Remove(whole);
        tree.Remove(top);
        CheckInvariants(tree, "after removing the intervals that end at the top");
        Collect(tree, ulong.MaxValue, ulong.MaxValue).Should().BeEmpty();
        Collect(tree, ulong.MaxValue - 1, ulong.MaxValue).Should().Equal(belowTop);
    }

    [Fact]
    public void RandomOperationsMatchBruteForceModel()
    {
        const int Seed = 20240611;
        const int Operations = 10_000;
        var random = new Random(Seed);
        var tree = new IntervalTree();
        var model = new List<MmuIntervalNotifier>();
        var expected = new List<MmuIntervalNotifier>();

        for (int op = 0; op < Operations; op++)
        {
            int choice = random.Next(10);
            if (choice < 4 || model.Count == 0)
            {
                // Small coordinates make equal starts, nesting and shared ends common.
                ulong start = (ulong)random.Next(0, 2000);
                ulong last = start + (ulong)(random.Next(4) == 0 ? random.Next(0, 1000) : random.Next(0, 30));
                MmuIntervalNotifier node = Node(start, last);
                tree.Insert(node);
                model.Add(node);
            }
            else if (choice < 7)
            {
                int index = random.Next(model.Count);
                tree.Remove(model[index]);
                model.RemoveAt(index);
            }
            else
            {
                ulong start = (ulong)random.Next(0, 2100);
                ulong last = random.Next(8) == 0 ? ulong.MaxValue : start + (ulong)random.Next(0, 200);
                expected.Clear();
                foreach (MmuIntervalNotifier node in model)
                {
                    if (node.Start <= last && node.Last >= start)
                    {
                        expected.Add(node);
                    }
                }

                List<MmuIntervalNotifier> actual = Collect(tree, start, last);
                var actualSet = new HashSet<MmuIntervalNotifier>(actual, ReferenceEqualityComparer.Instance);
                bool same = actual.Count == expected.Count && actualSet.Count == actual.Count && expected.TrueForAll(actualSet.Contains);
                same.Should().BeTrue($"seed {Seed}, operation {op}, query [{start}, {last}]: expected {expected.Count} overlaps, got {actual.Count}");
                for (int i = 1; i < actual.Count; i++)
                {
                    (actual[i - 1].Start <= actual[i].Start).Should().BeTrue($"seed {Seed}, operation {op}: overlaps come by start");
                }
            }

            tree.Count.Should().Be(model.Count, $"seed {Seed}, operation {op}");
            if (op % 16 == 0 || model.Count < 64)
            {
                CheckInvariants(tree, $"seed {Seed}, operation {op}");
            }
        }
    }

    [Fact]
    public void SortedInsertionsStayBalanced()
    {
        var tree = new IntervalTree();
        for (ulong i = 0; i < 4096; i++)
        {
            tree.Insert(Node(i * 4096, (i * 4096) + 4095));
        }

        tree.Root!._treeHeight.Should().BeLessThanOrEqualTo(18, "an AVL tree of 4096 nodes is at most 1.44 log2(n) high");
        CheckInvariants(tree, "sorted");
        Collect(tree, 4096 * 100, (4096 * 102) - 1).Select(n => n.Start).Should().Equal(4096UL * 100, 4096UL * 101);
    }

    private static void SameNodes(List<MmuIntervalNotifier> actual, params MmuIntervalNotifier[] expected)
    {
        actual.Should().HaveCount(expected.Length);
        actual.Should().OnlyContain(node => expected.Any(e => ReferenceEquals(e, node)));
    }

    internal static MmuIntervalNotifier Node(ulong start, ulong last) => new(s_owner, start, last, NoOps.Instance);

    private static List<MmuIntervalNotifier> Collect(IntervalTree tree, ulong start, ulong last)
    {
        var result = new List<MmuIntervalNotifier>();
        foreach (MmuIntervalNotifier node in tree.Overlapping(start, last))
        {
            result.Add(node);
        }

        return result;
    }

    private static void CheckInvariants(IntervalTree tree, string because)
    {
        int count = 0;
        ulong previousStart = 0;
        Check(tree.Root, null);
        count.Should().Be(tree.Count, because);

        (int Height, ulong Max) Check(MmuIntervalNotifier? node, MmuIntervalNotifier? parent)
        {
            if (node is null)
            {
                return (0, 0);
            }

            if (!ReferenceEquals(node._treeParent, parent))
            {
                Assert.Fail($"{because}: wrong parent link at {node}");
            }

            (int leftHeight, ulong leftMax) = Check(node._treeLeft, node);
            if (node.Start < previousStart)
            {
                Assert.Fail($"{because}: keys out of order at {node}");
            }

            previousStart = node.Start;
            count++;
            (int rightHeight, ulong rightMax) = Check(node._treeRight, node);
            int height = Math.Max(leftHeight, rightHeight) + 1;
            ulong max = Math.Max(node.Last, Math.Max(leftMax, rightMax));
            if (Math.Abs(leftHeight - rightHeight) > 1 || node._treeHeight != height || node._subtreeLast != max)
            {
                Assert.Fail($"{because}: unbalanced or stale augmentation at {node}");
            }

            return (height, max);
        }
    }

    private sealed class NoOps : IMmuIntervalNotifierOps
    {
        public static readonly NoOps Instance = new();

        public bool Invalidate(MmuIntervalNotifier subscription, in MmuNotifierRange range, ulong currentSequence) => true;
    }
}
