using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Hmm;

/// <summary>
/// The interval tree of one address space's interval subscriptions (the kernel's <c>interval_tree</c> over an
/// <c>rb_root_cached</c>): an AVL tree of closed intervals <c>[Start, Last]</c> keyed by start, where each node
/// also keeps the largest <c>Last</c> in its subtree. The nodes are the <see cref="MmuIntervalNotifier"/>s
/// themselves (intrusive links), so inserting and removing allocate nothing.
/// </summary>
/// <remarks>
/// <para>Equal starts are allowed; an in-order walk yields nodes by non-decreasing start.</para>
/// <para>Overlap queries walk parent links, as the kernel's <c>interval_tree_iter_first/next</c> do, so an
/// enumeration is a small struct and needs no stack. The first match costs O(log n); for subscriptions that do
/// not overlap one another (the usual case) a query reporting k nodes costs O(log n + k); when many intervals
/// nest inside each other each further match costs at most O(log n).</para>
/// <para>Concurrency model: none inside. The owner (<see cref="MmuNotifierSubscriptions"/>) changes the tree only
/// under its lock and only while no enumeration can be running; enumerations then run without the lock.</para>
/// </remarks>
internal sealed class IntervalTree
{
    private MmuIntervalNotifier? _root;

    /// <summary>Nodes in the tree.</summary>
    public int Count { get; private set; }

    /// <summary>The root, for invariant checks in tests.</summary>
    internal MmuIntervalNotifier? Root => _root;

    /// <summary>Links a node that is in no tree.</summary>
    public void Insert(MmuIntervalNotifier node)
    {
        Debug.Assert(node._treeHeight == 0, "The node is already in a tree.");
        node._treeLeft = null;
        node._treeRight = null;
        node._treeHeight = 1;
        node._subtreeLast = node.Last;

        MmuIntervalNotifier? parent = null;
        MmuIntervalNotifier? cursor = _root;
        bool goLeft = false;
        while (cursor is not null)
        {
            parent = cursor;
            goLeft = node.Start < cursor.Start;
            cursor = goLeft ? cursor._treeLeft : cursor._treeRight;
        }

        node._treeParent = parent;
        if (parent is null)
        {
            _root = node;
        }
        else if (goLeft)
        {
            parent._treeLeft = node;
        }
        else
        {
            parent._treeRight = node;
        }

        Count++;
        RebalanceToRoot(parent);
    }

    /// <summary>Unlinks a node that is in this tree.</summary>
    public void Remove(MmuIntervalNotifier node)
    {
        Debug.Assert(node._treeHeight != 0, "The node is not in a tree.");
        MmuIntervalNotifier? left = node._treeLeft;
        MmuIntervalNotifier? right = node._treeRight;
        MmuIntervalNotifier? rebalanceFrom;

        if (left is null || right is null)
        {
            rebalanceFrom = node._treeParent;
            ReplaceChild(node._treeParent, node, left ?? right);
        }
        else
        {
            // Two children: the in-order successor (leftmost of the right subtree) takes the node's place. Nodes
            // are objects other code holds, so the successor is relinked rather than having its key copied.
            MmuIntervalNotifier successor = right;
            while (successor._treeLeft is not null)
            {
                successor = successor._treeLeft;
            }

            if (successor == right)
            {
                rebalanceFrom = successor;
            }
            else
            {
                MmuIntervalNotifier successorParent = successor._treeParent!;
                rebalanceFrom = successorParent;
                successorParent._treeLeft = successor._treeRight;
                if (successor._treeRight is not null)
                {
                    successor._treeRight._treeParent = successorParent;
                }

                successor._treeRight = right;
                right._treeParent = successor;
            }

            successor._treeLeft = left;
            left._treeParent = successor;
            ReplaceChild(node._treeParent, node, successor);
        }

        node._treeLeft = null;
        node._treeRight = null;
        node._treeParent = null;
        node._treeHeight = 0;
        Count--;
        RebalanceToRoot(rebalanceFrom);
    }

    /// <summary>
    /// The nodes whose interval intersects <c>[start, last]</c> (both inclusive), by non-decreasing start. The
    /// tree must not change while the enumeration is in use.
    /// </summary>
    public OverlapEnumerator Overlapping(ulong start, ulong last) => new(_root, start, last);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int HeightOf(MmuIntervalNotifier? node) => node is null ? 0 : node._treeHeight;

    private static void Update(MmuIntervalNotifier node)
    {
        MmuIntervalNotifier? left = node._treeLeft;
        MmuIntervalNotifier? right = node._treeRight;
        ulong max = node.Last;
        int height = 0;
        if (left is not null)
        {
            max = Math.Max(max, left._subtreeLast);
            height = left._treeHeight;
        }

        if (right is not null)
        {
            max = Math.Max(max, right._subtreeLast);
            height = Math.Max(height, right._treeHeight);
        }

        node._subtreeLast = max;
        node._treeHeight = height + 1;
    }

    // Recomputes height and subtree maximum on every node from 'node' up to the root, rotating where the AVL
    // balance is broken. Walking the whole path (never stopping early) keeps the augmented maximum right after
    // any change below: O(log n).
    private void RebalanceToRoot(MmuIntervalNotifier? node)
    {
        while (node is not null)
        {
            Update(node);
            int balance = HeightOf(node._treeLeft) - HeightOf(node._treeRight);
            if (balance > 1)
            {
                MmuIntervalNotifier left = node._treeLeft!;
                if (HeightOf(left._treeLeft) < HeightOf(left._treeRight))
                {
                    RotateLeft(left);
                }

                node = RotateRight(node);
            }
            else if (balance < -1)
            {
                MmuIntervalNotifier right = node._treeRight!;
                if (HeightOf(right._treeRight) < HeightOf(right._treeLeft))
                {
                    RotateRight(right);
                }

                node = RotateLeft(node);
            }

            node = node._treeParent;
        }
    }

    private MmuIntervalNotifier RotateLeft(MmuIntervalNotifier node)
    {
        MmuIntervalNotifier pivot = node._treeRight!;
        MmuIntervalNotifier? middle = pivot._treeLeft;
        node._treeRight = middle;
        if (middle is not null)
        {
            middle._treeParent = node;
        }

        ReplaceChild(node._treeParent, node, pivot);
        pivot._treeLeft = node;
        node._treeParent = pivot;
        Update(node);
        Update(pivot);
        return pivot;
    }

    private MmuIntervalNotifier RotateRight(MmuIntervalNotifier node)
    {
        MmuIntervalNotifier pivot = node._treeLeft!;
        MmuIntervalNotifier? middle = pivot._treeRight;
        node._treeLeft = middle;
        if (middle is not null)
        {
            middle._treeParent = node;
        }

        ReplaceChild(node._treeParent, node, pivot);
        pivot._treeRight = node;
        node._treeParent = pivot;
        Update(node);
        Update(pivot);
        return pivot;
    }

    private void ReplaceChild(MmuIntervalNotifier? parent, MmuIntervalNotifier oldChild, MmuIntervalNotifier? newChild)
    {
        if (parent is null)
        {
            _root = newChild;
        }
        else if (parent._treeLeft == oldChild)
        {
            parent._treeLeft = newChild;
        }
        else
        {
            parent._treeRight = newChild;
        }

        if (newChild is not null)
        {
            newChild._treeParent = parent;
        }
    }

    // The leftmost node of the subtree at 'node' that intersects [start, last], or null. One descent: a left
    // subtree whose maximum reaches 'start' either holds the answer or proves that nothing to its right can
    // (everything there starts at or after a node that already starts beyond 'last').
    private static MmuIntervalNotifier? FirstInSubtree(MmuIntervalNotifier node, ulong start, ulong last)
    {
        while (true)
        {
            MmuIntervalNotifier? left = node._treeLeft;
            if (left is not null && left._subtreeLast >= start)
            {
                node = left;
                continue;
            }

            if (node.Start > last)
            {
                return null;
            }

            if (node.Last >= start)
            {
                return node;
            }

            MmuIntervalNotifier? right = node._treeRight;
            if (right is null || right._subtreeLast < start)
            {
                return null;
            }

            node = right;
        }
    }

    // The next node after 'node' in key order that intersects [start, last], or null: first the right subtree,
    // then up to the nearest ancestor reached from its left side, which is the next node in order.
    private static MmuIntervalNotifier? Next(MmuIntervalNotifier node, ulong start, ulong last)
    {
        while (true)
        {
            MmuIntervalNotifier? right = node._treeRight;
            if (right is not null && right._subtreeLast >= start)
            {
                return FirstInSubtree(right, start, last);
            }

            MmuIntervalNotifier? parent;
            while (true)
            {
                parent = node._treeParent;
                if (parent is null)
                {
                    return null;
                }

                bool cameFromLeft = parent._treeLeft == node;
                node = parent;
                if (cameFromLeft)
                {
                    break;
                }
            }

            if (node.Start > last)
            {
                return null;
            }

            if (node.Last >= start)
            {
                return node;
            }
        }
    }

    /// <summary>
    /// An allocation-free enumeration of the nodes intersecting a closed interval; usable with <c>foreach</c>.
    /// A copy continues independently from where it was copied.
    /// </summary>
    internal struct OverlapEnumerator
    {
        private readonly ulong _start;
        private readonly ulong _last;
        private MmuIntervalNotifier? _pendingRoot;
        private MmuIntervalNotifier? _current;

        internal OverlapEnumerator(MmuIntervalNotifier? root, ulong start, ulong last)
        {
            _start = start;
            _last = last;
            _pendingRoot = start <= last ? root : null;
            _current = null;
        }

        /// <summary>The current node; valid after <see cref="MoveNext"/> returned true.</summary>
        public readonly MmuIntervalNotifier Current => _current!;

        /// <summary>Advances to the next intersecting node.</summary>
        public bool MoveNext()
        {
            if (_current is not null)
            {
                _current = Next(_current, _start, _last);
            }
            else if (_pendingRoot is not null)
            {
                MmuIntervalNotifier root = _pendingRoot;
                _pendingRoot = null;
                _current = root._subtreeLast >= _start ? FirstInSubtree(root, _start, _last) : null;
            }

            return _current is not null;
        }

        /// <summary>Returns this enumerator, so that <c>foreach</c> works on it.</summary>
        public readonly OverlapEnumerator GetEnumerator() => this;
    }
}
