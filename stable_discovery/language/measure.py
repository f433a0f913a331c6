"""How long a prompt a compiled tree can make and how deep it is, and the limits on both.

Sharing keeps a tree small while the text it makes doubles at each level (a slot used
twice inside a slot used twice ...), so the compiled tree is measured before it is used.
"""

from __future__ import annotations

from collections.abc import Sequence

from stable_discovery.errors import Source, TemplateError
from stable_discovery.space.nodes import Lit, Multi, Node, Pick, Ref, Seq, TextPick, Wrap

__all__ = ["MAX_DEPTH", "MAX_PROMPT_CHARS", "measure", "check_limits"]

#: Most levels of slots, choices and wildcards inside one another (compiling and
#: sampling recurse through them).
MAX_DEPTH = 100
#: Longest prompt a template may make (a 10 MB line of text is fine; a slot doubling
#: itself a hundred times is not).
MAX_PROMPT_CHARS = 50_000_000


def check_limits(root: Node, source: Source, at: int) -> None:
    """Refuse a tree that makes too long prompts or nests too deeply (located at ``at``)."""
    longest, depth = measure(root)
    if longest > MAX_PROMPT_CHARS:
        # a slot or wildcard used twice inside one used twice ... doubles at each level
        raise TemplateError(
            f"the template can make prompts of up to {longest:,} characters "
            f"(the limit is {MAX_PROMPT_CHARS:,})",
            source,
            at,
            hint="a slot used twice inside a slot used twice doubles the text at each level",
        )
    if depth > 2 * MAX_DEPTH + 8:
        # a shared slot or a wildcard compiled once and used again deeper down
        raise TemplateError(
            f"the template nests too deeply: more than {MAX_DEPTH} levels of slots, choices "
            "and wildcards inside one another",
            source,
            at,
            hint="flatten it: fewer slots that refer to slots that refer to slots",
        )


def measure(root: Node) -> tuple[int, int]:
    """The length of the longest text the tree can make (an upper bound) and the depth of
    the tree (shared subtrees counted where used), in one iterative walk."""
    measures: dict[int, tuple[int, int]] = {}  # id(node) -> (longest, depth)
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in measures:
            continue
        kids = _kids(node)
        if kids is None:
            measures[id(node)] = (_leaf_length(node), 1)
            continue
        if not ready:
            stack.append((node, True))
            for k in kids:
                if id(k) not in measures:
                    if type(k) is Lit:
                        measures[id(k)] = (len(k.text), 1)  # most nodes: no visit of their own
                    else:
                        stack.append((k, False))
            continue
        kid_measures = [measures[id(k)] for k in kids]
        sizes = [m[0] for m in kid_measures]
        depth = 1 + max([m[1] for m in kid_measures], default=0)
        if isinstance(node, (Seq, Wrap)):
            longest = sum(sizes)
        elif isinstance(node, Multi):
            top = sorted(sizes, reverse=True)[: node.hi]
            longest = sum(top) + len(node.joiner) * max(0, node.hi - 1)
        elif isinstance(node, TextPick):
            longest = max([node.longest, *sizes])
        else:
            longest = max(sizes, default=0)
        measures[id(node)] = (longest, depth)
    return measures[id(root)]


def _kids(node: Node) -> Sequence[Node] | None:
    """A node's children (None for a leaf)."""
    if isinstance(node, Seq):
        return node.children
    if isinstance(node, Wrap):
        return (node.wrapper, node.inner)
    if isinstance(node, (Pick, Multi)):
        return node.alts
    if isinstance(node, Ref):
        return (node.pick,) if node.pick is not None else ()
    if isinstance(node, TextPick) and node.nodes:
        return tuple(node.nodes.values())
    return None


def _leaf_length(node: Node) -> int:
    if isinstance(node, Lit):
        return len(node.text)
    if isinstance(node, TextPick):
        return node.longest
    return 0
