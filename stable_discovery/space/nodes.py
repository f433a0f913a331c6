"""The space of samples of a program, as a tree of evaluation nodes.

One tree serves every sampler:

* ``rand(ctx)`` evaluates one random sample, taking draws in evaluation order;
* ``count`` / ``decode(i)`` / ``items()`` give the combinatorial space in odometer
  order (leftmost choice varies slowest) with exact counts and random access.

A slot referenced from several places is a :class:`Ref`: it is bound at its first use
in a prompt and reused after, so it varies once per prompt. Subtrees without such
references are *closed*: their counts are plain sums and products and their expansions
stream from small cached tables. The rest goes through a continuation-based counter that
binds shared slots lazily, so a slot used only inside an absent optional part never
multiplies the space.

Identical alternatives of one choice (same text as written) count once.
"""

from __future__ import annotations

import gc
import itertools
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from math import factorial
from typing import Any, cast

from stable_discovery.space.trace import Chosen

__all__ = ["Lit", "Seq", "Pick", "Multi", "Ref", "OpenSpace", "SpaceTooComplex", "draw_function"]

#: Subtrees with at most this many expansions are expanded once and cached.
TABLE_LIMIT = 4096
#: Subtrees with at most this many random paths are sampled with a single draw.
RAND_TABLE_LIMIT = 512

TraceItems = tuple  # tuple of (name, Chosen) pairs


class SpaceTooComplex(Exception):
    """The space cannot be counted within the bounds this module keeps."""


#: Largest count kept exactly (about 10**100000): a few kilobytes of template can
#: otherwise describe counts whose digits alone fill the memory.
MAX_COUNT_BITS = 333_000


def _too_many(bits: int) -> None:
    if bits > MAX_COUNT_BITS:
        raise SpaceTooComplex("more than 10^100000 combinations: too many to count exactly")


def draw_function(skey: int, row: list[float]) -> Any:
    """A draw function: the precomputed row first, then computed draws."""
    from stable_discovery.space.draws import uniform

    it = iter(row)
    j = len(row)

    def nxt() -> float:
        nonlocal j
        for u in it:
            return u
        j += 1
        return uniform(skey, j - 1)

    return nxt


def _table_rand(paths: list[tuple[str, TraceItems, float]]) -> RandFn:
    """One draw chooses among precomputed paths (text, trace, probability)."""
    texts = [t for t, _, _ in paths]
    traces = [tr for _, tr, _ in paths]
    cum: list[float] = []
    acc = 0.0
    for _, _, p in paths:
        acc += p
        cum.append(acc)
    total, n1 = acc, len(paths) - 1
    if n1 == 0:
        text0, trace0 = texts[0], traces[0]

        def one(out: list[str], trace: list[tuple], nxt: Any, bound: dict) -> None:
            out.append(text0)
            trace.extend(trace0)

        return one

    def f(out: list[str], trace: list[tuple], nxt: Any, bound: dict) -> None:
        k = bisect_right(cum, nxt() * total)
        if k > n1:
            k = n1
        out.append(texts[k])
        trace.extend(traces[k])

    return f


RandFn = Callable[[list[str], list[tuple], Callable[[], float], dict], None]

#: The nodes holding memoised random paths while the outermost ``rand_fn()`` runs.
_memoised: list | None = None


class Node:
    """A node of the space. ``rand_fn()`` gives a closure that evaluates one random sample:
    ``f(out, trace, next_draw, bound)`` appends text to ``out`` and (name, Chosen) pairs
    to ``trace``, taking draws from ``next_draw()``; ``bound`` holds shared slots' values.
    """

    __slots__ = ("count", "closed", "max_draws", "_table", "_rand", "_paths")

    count: int
    closed: bool
    max_draws: int
    _table: list[tuple[str, TraceItems]] | None

    def table(self) -> list[tuple[str, TraceItems]] | None:
        """All expansions as (text, trace) pairs when there are few; else None."""
        if not self.closed or self.count > TABLE_LIMIT:
            return None
        t = self._table
        if t is None:
            t = self._table = list(self.items())
        return t

    def items(self) -> Iterator[tuple[str, TraceItems]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, index: int, out: list[str], trace: list[tuple]) -> None:  # pragma: no cover
        raise NotImplementedError

    def rand_fn(self) -> RandFn:
        fn = getattr(self, "_rand", None)
        if fn is None:
            global _memoised
            outermost: list | None = None
            gc_paused = False
            if _memoised is None:
                # building a large tree's functions makes many small objects that stay
                # (and no garbage): the cyclic collector's passes over them took half
                # the time, so it waits until the functions are built
                outermost = _memoised = []
                gc_paused = gc.isenabled()
                if gc_paused:
                    gc.disable()
            try:
                paths = None if isinstance(self, Lit) else self.rand_paths(RAND_TABLE_LIMIT)
                fn = self._rand = _table_rand(paths) if paths is not None else self._make_rand()
            finally:
                if outermost is not None:
                    # the functions hold what they need: free the memos
                    _memoised = None
                    for node in outermost:
                        node._paths = None
                if gc_paused:
                    gc.enable()
        return fn

    def rand_paths(self, limit: int) -> list[tuple[str, TraceItems, float]] | None:
        """Every evaluation path with its probability, when there are at most ``limit``.

        A small subtree is sampled with one draw over its paths: the same distribution
        as drawing choice by choice, for a fraction of the work. While ``rand_fn()``
        builds a tree's functions (asking every node, each of which asks its subtree)
        the paths are memoised per node, so each subtree is computed once; the lists
        returned are shared and must not be changed.
        """
        memo = getattr(self, "_paths", None)
        if memo is not None and memo[0] == limit:
            return memo[1]  # type: ignore[no-any-return]
        paths = self._rand_paths(limit)
        memoised = _memoised
        if memoised is not None:
            self._paths = (limit, paths)
            memoised.append(self)
        return paths

    def _rand_paths(self, limit: int) -> list[tuple[str, TraceItems, float]] | None:
        return None

    def _make_rand(self) -> RandFn:  # pragma: no cover
        raise NotImplementedError


class Lit(Node):
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
        self.count = 1
        self.closed = True
        self.max_draws = 0
        self._table = [(text, ())]

    def items(self) -> Iterator[tuple[str, TraceItems]]:
        yield self.text, ()

    def decode(self, index: int, out: list[str], trace: list[tuple]) -> None:
        out.append(self.text)

    def rand_paths(self, limit: int) -> list[tuple[str, TraceItems, float]] | None:
        return [(self.text, (), 1.0)]

    def _make_rand(self) -> RandFn:
        text = self.text

        def f(out: list[str], trace: list[tuple], nxt: Any, bound: dict) -> None:
            out.append(text)

        return f


class Seq(Node):
    __slots__ = ("children",)

    def __init__(self, children: Sequence[Node]) -> None:
        self.children = tuple(children)
        self.closed = all(c.closed for c in self.children)
        self.max_draws = sum(c.max_draws for c in self.children)
        self._table = None
        if self.closed:
            _too_many(sum(c.count.bit_length() for c in self.children))
            self.count = _product([c.count for c in self.children])
        else:
            self.count = -1

    def _rand_paths(self, limit: int) -> list[tuple[str, TraceItems, float]] | None:
        acc: list[tuple[str, TraceItems, float]] = [("", (), 1.0)]
        for c in self.children:
            sub = c.rand_paths(limit)
            if sub is None or len(acc) * len(sub) > limit:
                return None
            acc = [(t1 + t2, tr1 + tr2, p1 * p2) for t1, tr1, p1 in acc for t2, tr2, p2 in sub]
        return acc

    def _make_rand(self) -> RandFn:
        # Generated straight-line code: literals and picks among literals are inlined,
        # other children are calls. This is the random sampler's hot path.
        env: dict[str, Any] = {"bisect_right": bisect_right}
        lines = ["def f(out, trace, nxt, bound):", "    append = out.append"]
        for i, c in enumerate(self.children):
            if isinstance(c, Lit):
                env[f"t{i}"] = c.text
                lines.append(f"    append(t{i})")
            elif isinstance(c, Pick) and all(lit is not None for lit in c.lits):
                env[f"c{i}"], env[f"w{i}"], env[f"l{i}"] = c.cum, c.total, c.lits
                n1 = len(c.alts) - 1
                if n1 == 0:
                    lines.append("    k = 0")
                else:
                    lines.append(f"    k = bisect_right(c{i}, nxt() * w{i})")
                    lines.append(f"    if k > {n1}: k = {n1}")
                if c.singles is not None:
                    env[f"e{i}"] = c.singles
                    lines.append(f"    trace.append(e{i}[k])")
                elif c.entries is not None:
                    env[f"e{i}"] = c.entries
                    lines.append(f"    trace.extend(e{i}[k])")
                lines.append(f"    append(l{i}[k])")
            else:
                env[f"g{i}"] = c.rand_fn()
                lines.append(f"    g{i}(out, trace, nxt, bound)")
        exec("\n".join(lines), env)
        return env["f"]  # type: ignore[no-any-return]

    def items(self) -> Iterator[tuple[str, TraceItems]]:
        # runs of children with small tables go through one itertools.product
        groups: list[Any] = []
        run: list[list] = []
        for c in self.children:
            t = c.table()
            if t is not None:
                run.append(t)
            else:
                if run:
                    groups.append(run)
                    run = []
                groups.append(c)
        if run:
            groups.append(run)
        return _product_groups(groups)

    def decode(self, index: int, out: list[str], trace: list[tuple]) -> None:
        # mixed radix, leftmost digit slowest: peel digits off from the right
        digits = []
        for c in reversed(self.children):
            index, digit = divmod(index, c.count)
            digits.append(digit)
        for c, digit in zip(self.children, reversed(digits), strict=False):
            c.decode(digit, out, trace)


def _product(values: Sequence[int]) -> int:
    """The product of many integers by balanced halves: fast when the result is huge."""
    if len(values) <= 16:
        total = 1
        for v in values:
            total *= v
        return total
    mid = len(values) // 2
    return _product(values[:mid]) * _product(values[mid:])


def _run_items(run: list[list]) -> Iterator[tuple[str, TraceItems]]:
    if len(run) == 1:
        yield from run[0]
        return
    join = "".join
    for combo in itertools.product(*run):
        yield join([t for t, _ in combo]), tuple(itertools.chain.from_iterable(tr for _, tr in combo))


def _product_groups(groups: list[Any]) -> Iterator[tuple[str, TraceItems]]:
    if not groups:
        yield "", ()
        return
    if len(groups) > 32:
        # one generator per group nested in the next would overflow the stack
        yield from _product_groups_flat(groups)
        return
    first = groups[0]
    head = _run_items(first) if isinstance(first, list) else first.items()
    if len(groups) == 1:
        yield from head
        return
    rest = groups[1:]
    for t1, tr1 in head:
        for t2, tr2 in _product_groups(rest):
            yield t1 + t2, tr1 + tr2


def _product_groups_flat(groups: list[Any]) -> Iterator[tuple[str, TraceItems]]:
    """``_product_groups`` as an odometer over one iterator per group (no recursion)."""
    makers = [(lambda g=g: _run_items(g)) if isinstance(g, list) else g.items for g in groups]
    n = len(makers)
    iters: list[Any] = [makers[0]()] + [None] * (n - 1)
    texts: list[str] = [""] * n
    traces: list[TraceItems] = [()] * n
    i = 0
    while i >= 0:
        item = next(iters[i], None)
        if item is None:
            i -= 1
            continue
        texts[i], traces[i] = item
        if i == n - 1:
            yield "".join(texts), tuple(itertools.chain.from_iterable(traces))
        else:
            i += 1
            iters[i] = makers[i]()


#: What choosing alternative ``k`` of a :class:`Pick` adds to the trace, for each ``k``.
Entries = tuple[TraceItems, ...]


class Pick(Node):
    """One of several alternatives, traced as ``name`` when it is set.

    ``entries`` (instead of ``name``) says exactly what each alternative adds to the
    trace: nothing (the absent case of an optional part), one entry, or several (a line
    of a glob and its file; the items of a multi-select's selection); ``singles`` the one
    entry each alternative adds, when that is all (kept without a tuple around each: a
    wildcard of 10,000 lines makes 10,000 fewer objects).
    """

    __slots__ = (
        "alts",
        "cum",
        "total",
        "name",
        "indices",
        "texts",
        "lits",
        "distinct",
        "_entries",
        "singles",
        "_starts",
    )

    def __init__(
        self,
        alts: Sequence[Node],
        weights: Sequence[float],
        name: str | None = None,
        texts: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
        entries: Entries | None = None,
        singles: Sequence[tuple] | None = None,
    ) -> None:
        self.alts = tuple(alts)
        self.name = name
        self.texts = tuple(texts) if texts is not None else tuple("" for _ in alts)
        self.indices = tuple(range(len(self.alts)))

        # combinatorial view: the first of each group of identical alternatives
        first: dict = {}
        canonical = []
        distinct = []
        for k, _a in enumerate(self.alts):
            key = keys[k] if keys is not None else None
            if key is not None:
                if key in first:
                    canonical.append(first[key])
                    continue
                first[key] = k
            canonical.append(k)
            distinct.append(k)
        self.distinct = tuple(distinct)
        # identical alternatives are one alternative: a random draw of any of them is
        # traced with the first one's index, as the combinatorial view traces it
        if singles is None and entries is None and name is not None:
            singles = tuple((name, Chosen(canonical[k], t)) for k, t in enumerate(self.texts))
        if singles is None and entries is not None and all(len(e) == 1 for e in entries):
            singles = tuple(e[0] for e in entries)
        # the common case, one entry per alternative: appended without a tuple around it
        self.singles = tuple(singles) if singles is not None else None
        self._entries = entries
        cum = []
        total = 0.0
        for w in weights:
            total += w
            cum.append(total)
        self.cum = cum
        self.total = total
        self.lits = tuple(a.text if isinstance(a, Lit) else None for a in self.alts)
        self.closed = all(a.closed for a in self.alts)
        self.max_draws = 1 + max((a.max_draws for a in self.alts), default=0)
        self._table = None
        self._starts: list[int] | None = None
        if self.closed:
            self.count = sum(self.alts[k].count for k in self.distinct)
        else:
            self.count = -1

    @property
    def entries(self) -> Entries | None:
        """What each alternative adds to the trace (a tuple per alternative), or None."""
        if self._entries is None and self.singles is not None:
            self._entries = tuple((e,) for e in self.singles)
        return self._entries

    def _rand_paths(self, limit: int) -> list[tuple[str, TraceItems, float]] | None:
        if len(self.alts) > limit:
            return None  # every alternative has at least one path
        out: list[tuple[str, TraceItems, float]] = []
        weights = [b - a for a, b in zip([0.0] + self.cum[:-1], self.cum, strict=False)]
        for k, a in enumerate(self.alts):
            sub = a.rand_paths(limit)
            if sub is None or len(out) + len(sub) > limit:
                return None
            share = weights[k] / self.total
            entry = self.entries[k] if self.entries is not None else ()
            out.extend((t, entry + tr, p * share) for t, tr, p in sub)
        return out

    def _make_rand(self) -> RandFn:
        cum, total, n1 = self.cum, self.total, len(self.alts) - 1
        entries, singles = self.entries, self.singles
        if all(lit is not None for lit in self.lits):
            lits = cast(tuple[str, ...], self.lits)
            if entries is None:

                def f(out: list[str], trace: list[tuple], nxt: Any, bound: dict) -> None:
                    k = bisect_right(cum, nxt() * total) if n1 else 0
                    out.append(lits[k] if k <= n1 else lits[n1])

            elif singles is not None:

                def f(out: list[str], trace: list[tuple], nxt: Any, bound: dict) -> None:
                    k = bisect_right(cum, nxt() * total) if n1 else 0
                    if k > n1:
                        k = n1
                    trace.append(singles[k])
                    out.append(lits[k])

            else:

                def f(out: list[str], trace: list[tuple], nxt: Any, bound: dict) -> None:
                    k = bisect_right(cum, nxt() * total) if n1 else 0
                    if k > n1:
                        k = n1
                    trace.extend(entries[k])
                    out.append(lits[k])

            return f
        fns = tuple(a.rand_fn() for a in self.alts)

        def g(out: list[str], trace: list[tuple], nxt: Any, bound: dict) -> None:
            k = bisect_right(cum, nxt() * total) if n1 else 0
            if k > n1:
                k = n1
            if entries is not None:
                trace.extend(entries[k])
            fns[k](out, trace, nxt, bound)

        return g

    def items(self) -> Iterator[tuple[str, TraceItems]]:
        entries = self.entries
        for k in self.distinct:
            a = self.alts[k]
            if entries is None or not entries[k]:
                yield from a.items()
            else:
                entry = entries[k]
                for text, tr in a.items():
                    yield text, entry + tr

    def decode(self, index: int, out: list[str], trace: list[tuple]) -> None:
        starts = self._starts
        if starts is None:
            starts = []
            acc = 0
            for k in self.distinct:
                starts.append(acc)
                acc += self.alts[k].count
            self._starts = starts
        pos = bisect_right(starts, index) - 1
        k = self.distinct[pos]
        if self.entries is not None:
            trace.extend(self.entries[k])
        self.alts[k].decode(index - starts[pos], out, trace)


def _elementary(counts: Sequence[int], kmax: int) -> list[int]:
    """e_0..e_kmax of the counts (e_j: sum over j-subsets of the product of counts)."""
    e = [1] + [0] * kmax
    for c in counts:
        for j in range(kmax, 0, -1):
            e[j] += e[j - 1] * c
    return e


_MULTI_WORK_LIMIT = 20_000_000


class Multi(Node):
    """``{lo-hi$$joiner$$…}``: an ordered selection of distinct alternatives.

    When traced, ``item_trace[k]`` is the entry alternative ``k`` adds when it is picked
    (each item is a variable of its own, present or absent) and ``count_trace[j]`` the
    entry of a selection of ``j`` items (for a range of counts); the trace lists the count, then the
    items in the order they appear in the text, each followed by its own choices.
    """

    __slots__ = (
        "alts",
        "weights",
        "lo",
        "hi",
        "joiner",
        "distinct",
        "items_trace",
        "counts_trace",
        "_blocks",
        "_uniform",
        "_dlo",
        "_dhi",
        "_merged",
    )

    def __init__(
        self,
        alts: Sequence[Node],
        weights: Sequence[float],
        lo: int,
        hi: int | None,
        joiner: str,
        keys: Sequence[str | None],
        item_trace: Sequence[tuple] | None = None,
        count_trace: Sequence[tuple] | None = None,
    ) -> None:
        self.items_trace = tuple(item_trace) if item_trace is not None else None
        self.counts_trace = tuple(count_trace) if count_trace is not None else None
        self.alts = tuple(alts)
        self.weights = tuple(weights)
        n = len(self.alts)
        self.hi = n if hi is None else min(hi, n)
        self.lo = min(lo, self.hi)
        self.joiner = joiner
        first: dict = {}
        distinct: list[int] = []
        merged: list[float] = []  # weight of each distinct alternative (duplicates add up)
        for k, key in enumerate(keys):
            if key is not None and key in first:
                merged[first[key]] += self.weights[k]
                continue
            if key is not None:
                first[key] = len(distinct)
            distinct.append(k)
            merged.append(self.weights[k])
        self.distinct = tuple(distinct)
        self._merged = tuple(merged)
        self._uniform = len(set(merged)) <= 1
        self.closed = all(a.closed for a in self.alts)
        self.max_draws = 1 + self.hi * (1 + max((a.max_draws for a in self.alts), default=0))
        self._table = None
        self._blocks: list[tuple[int, int]] | None = None
        if not self.closed:
            raise AssertionError("Multi over open alternatives is compiled as a Pick")
        counts = [self.alts[k].count for k in self.distinct]
        dhi = min(self.hi, len(counts))
        dlo = min(self.lo, dhi)
        self._dlo, self._dhi = dlo, dhi
        # count <= (n * max count) ** dhi
        _too_many(dhi * (len(counts) * max(counts, default=1)).bit_length())
        if len(set(counts)) <= 1:
            c = counts[0] if counts else 1
            e = [_comb(len(counts), j) * c**j for j in range(dhi + 1)]
        else:
            if len(counts) * (dhi + 1) > _MULTI_WORK_LIMIT:
                raise SpaceTooComplex(
                    f"a multi-select over {len(counts)} alternatives of {dhi} items is too large to count"
                )
            e = _elementary(counts, dhi)
        self.count = sum(factorial(j) * e[j] for j in range(dlo, dhi + 1))

    def _head(self, k: int) -> TraceItems:
        """The trace entry of a selection of ``k`` items (none when the count is fixed)."""
        counts = self.counts_trace
        return (counts[k],) if counts is not None else ()

    def _item(self, alt: int) -> TraceItems:
        """The trace entry of alternative ``alt`` picked (none when untraced)."""
        items = self.items_trace
        return (items[alt],) if items is not None else ()

    # random ------------------------------------------------------------------------------
    def _make_rand(self) -> RandFn:
        # distinct alternatives only, as in the combinatorial view: {2$$a|a|b} never gives a,a
        fns = tuple(self.alts[k].rand_fn() for k in self.distinct)
        n, lo, hi, joiner = len(self.distinct), self._dlo, self._dhi, self.joiner
        all_weights, uniform = self._merged, self._uniform
        items = tuple(self.items_trace[k] for k in self.distinct) if self.items_trace is not None else None
        counts = self.counts_trace

        def f(out: list[str], trace: list[tuple], nxt: Any, bound: dict) -> None:
            k = min(hi, lo + int(nxt() * (hi - lo + 1)))
            if counts is not None:
                trace.append(counts[k])
            chosen: list[int] = []
            if uniform:
                swaps: dict[int, int] = {}
                for t in range(k):
                    r = min(n - 1, t + int(nxt() * (n - t)))
                    vt, vr = swaps.get(t, t), swaps.get(r, r)
                    swaps[r] = vt
                    chosen.append(vr)
            else:
                remaining = list(range(n))
                weights = list(all_weights)
                for _ in range(k):
                    total = sum(weights)
                    u = nxt()
                    if total <= 0:
                        # only zero-weight alternatives are left and more must be chosen:
                        # take one uniformly, so the sample stays in the combinatorial space
                        pos = min(len(remaining) - 1, int(u * len(remaining)))
                    else:
                        x = u * total
                        acc = 0.0
                        pos = len(remaining) - 1
                        for p, w in enumerate(weights):
                            acc += w
                            if x < acc:
                                pos = p
                                break
                    chosen.append(remaining.pop(pos))
                    weights.pop(pos)
            parts = []
            for idx in chosen:
                if items is not None:
                    trace.append(items[idx])
                mark = len(out)
                fns[idx](out, trace, nxt, bound)
                parts.append("".join(out[mark:]))
                del out[mark:]
            out.append(joiner.join(parts))

        return f

    # combinatorial -----------------------------------------------------------------------
    def items(self) -> Iterator[tuple[str, TraceItems]]:
        join = self.joiner.join
        chain = itertools.chain.from_iterable
        for k in range(self._dlo, self._dhi + 1):
            head = self._head(k)
            for perm in itertools.permutations(self.distinct, k):
                picked = [self._item(i) for i in perm]
                maybe_tables = [self.alts[i].table() for i in perm]
                if all(t is not None for t in maybe_tables):
                    tables = cast(list[list[tuple[str, TraceItems]]], maybe_tables)
                    for combo in itertools.product(*tables):
                        yield (
                            join([t for t, _ in combo]),
                            head + tuple(chain(e + tr for e, (_, tr) in zip(picked, combo, strict=True))),
                        )
                else:
                    for text, tr in _joined_product([self.alts[i] for i in perm], join, picked):
                        yield text, head + tr

    def decode(self, index: int, out: list[str], trace: list[tuple]) -> None:
        counts = {k: self.alts[k].count for k in self.distinct}
        uniform = len(set(counts.values())) <= 1
        c = next(iter(counts.values()), 1)
        n = len(counts)
        e_all_k = None if uniform else _elementary(list(counts.values()), self._dhi)
        for k in range(self._dlo, self._dhi + 1):
            if uniform:
                block = perm(n, k) * c**k
            else:
                block = factorial(k) * e_all_k[k]  # type: ignore[index]
            if index < block:
                break
            index -= block
        trace.extend(self._head(k))
        # As items() orders them: the selection (which alternatives, in which order)
        # varies slowest, then the chosen alternatives' own choices, leftmost slowest.
        remaining = list(self.distinct)
        perm_: list[int] = []
        mult = 1  # expansions of the alternatives chosen so far
        if uniform:
            # every candidate's block has the same size: one division per position
            # (a selection of 500 among 1000 decodes at once)
            rest = perm(n - 1, k - 1) * c ** (k - 1) if k else 1
            for p in range(k):
                left = k - p - 1
                size = mult * c * rest
                pos, index = divmod(index, size)
                perm_.append(remaining.pop(pos))
                mult *= c
                if left:
                    rest //= (len(remaining)) * c  # perm(m-2, left-1) c^(left-1)
            self._decode_chosen(perm_, counts, mult, index, out, trace)
            return
        for p in range(k):
            left = k - p - 1
            e_all = _elementary([counts[a] for a in remaining], left)
            for pos, a in enumerate(remaining):
                # e_left of remaining without a, from e of remaining
                e_wo = [1]
                for j in range(1, left + 1):
                    e_wo.append(e_all[j] - counts[a] * e_wo[j - 1])
                rest = factorial(left) * e_wo[left]
                size = mult * counts[a] * rest
                if index < size:
                    perm_.append(a)
                    mult *= counts[a]
                    remaining.pop(pos)
                    break
                index -= size
        self._decode_chosen(perm_, counts, mult, index, out, trace)

    def _decode_chosen(self, chosen, counts, mult, index, out, trace) -> None:  # type: ignore[no-untyped-def]
        # index < mult now: a mixed-radix number over the chosen alternatives
        parts: list[str] = []
        for a in chosen:
            mult //= counts[a]
            sub, index = divmod(index, mult)
            trace.extend(self._item(a))
            piece: list[str] = []
            self.alts[a].decode(sub, piece, trace)
            parts.append("".join(piece))
        out.append(self.joiner.join(parts))


def _joined_product(
    nodes: list[Node], join: Any, picked: Sequence[TraceItems]
) -> Iterator[tuple[str, TraceItems]]:
    def rec(i: int) -> Iterator[tuple[list[str], TraceItems]]:
        if i == len(nodes):
            yield [], ()
            return
        for t, tr in nodes[i].items():
            for rest, rtr in rec(i + 1):
                yield [t] + rest, picked[i] + tr + rtr

    for texts, tr in rec(0):
        yield join(texts), tr


def perm(n: int, k: int) -> int:
    from math import perm as _perm

    return _perm(n, k)


def _comb(n: int, k: int) -> int:
    from math import comb

    return comb(n, k)


class Ref(Node):
    """A slot used in several places: bound at its first use in a prompt, then reused."""

    __slots__ = ("name", "pick")

    def __init__(self, name: str) -> None:
        self.name = name
        self.pick: Pick | None = None  # set once the slot is compiled (cycles are refused)
        self.closed = False
        self.count = -1
        self.max_draws = 0  # set with the pick
        self._table = None

    def _make_rand(self) -> RandFn:
        name = self.name
        assert self.pick is not None
        pick = self.pick.rand_fn()

        def f(out: list[str], trace: list[tuple], nxt: Any, bound: dict) -> None:
            value = bound.get(name)
            if value is None:
                mark = len(out)
                pick(out, trace, nxt, bound)
                value = "".join(out[mark:])
                del out[mark:]
                bound[name] = value
            out.append(value)

        return f


class _End:
    """Marks the end of a shared slot's first evaluation in a continuation."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class OpenSpace:
    """Counting and decoding of a tree with shared slots, by memoized continuations."""

    def __init__(self, root: Node) -> None:
        self.root = root
        self._cells: dict = {}
        self._ends: dict = {}
        self._memo: dict = {}
        self._stripped: dict = {}
        self._start = self._cons(root, None)
        self.count = self._count(self._start, frozenset())

    def _cons(self, item: Any, rest: Any) -> Any:
        key = (id(item), id(rest))
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = (item, rest)
        return cell

    def _push(self, items: Sequence[Any], rest: Any) -> Any:
        for item in reversed(items):
            rest = self._cons(item, rest)
        return rest

    def _end(self, name: str) -> _End:
        end = self._ends.get(name)
        if end is None:
            end = self._ends[name] = _End(name)
        return end

    def _strip(self, cell: Any) -> tuple[Any, int]:
        """A continuation without its closed items and end marks, which do not change
        how it counts (closed items only multiply), and the product of their counts.

        Counting memoizes on stripped continuations: continuations that differ only in
        literal text still pending (``<s> x`` and ``<s> y``) count once, so nested shared
        slots cost time in proportion to the template, not to the number of prompts.
        """
        stripped = self._stripped
        chain = []
        while cell is not None and id(cell) not in stripped:
            chain.append(cell)
            cell = cell[1]
        result = (None, 1) if cell is None else stripped[id(cell)]
        for cell in reversed(chain):
            item = cell[0]
            rest, mult = result
            if isinstance(item, _End):
                result = (rest, mult)
            elif item.closed:
                result = (rest, mult * item.count)
            else:
                result = (self._cons(item, rest), mult)
            stripped[id(cell)] = result
        return result

    def _terms(self, cell: Any, bound: frozenset) -> list[tuple[Any, frozenset, int]]:
        """count(cell, bound) is the sum of mult * count(c, b) over these (c, b, mult)."""
        item, rest = cell
        if isinstance(item, Seq):
            c, m = self._strip(self._push(item.children, rest))
            return [(c, bound, m)]
        if isinstance(item, Pick):
            out = []
            for k in item.distinct:
                c, m = self._strip(self._cons(item.alts[k], rest))
                out.append((c, bound, m))
            return out
        if isinstance(item, Ref):
            if item.name in bound:
                return [(rest, bound, 1)]
            pick = item.pick
            assert pick is not None
            inner = bound | {item.name}
            out = []
            for k in pick.distinct:
                c, m = self._strip(self._cons(pick.alts[k], rest))
                out.append((c, inner, m))
            return out
        raise AssertionError(type(item))  # pragma: no cover - stripped cells are open

    def _count(self, cell: Any, bound: frozenset) -> int:
        start, mult = self._strip(cell)
        if start is None or not mult:
            return mult
        memo = self._memo
        key = (id(start), bound)
        hit: int | None = memo.get(key)
        if hit is not None:
            return mult * hit
        # depth-first with an explicit stack: long continuations cannot overflow it
        stack = [(start, bound)]
        while stack:
            c, b = stack[-1]
            k = (id(c), b)
            if k in memo:
                stack.pop()
                continue
            terms = self._terms(c, b)
            missing = [(tc, tb) for tc, tb, _ in terms if tc is not None and (id(tc), tb) not in memo]
            if missing:
                stack.extend(missing)
                continue
            memo[k] = sum(tm * (1 if tc is None else memo[(id(tc), tb)]) for tc, tb, tm in terms)
            stack.pop()
        total: int = memo[key]
        return mult * total

    def _choose(self, pick: Pick, after: Any, names: frozenset, index: int) -> tuple[Any, int]:
        """The cell that continues with the alternative of ``pick`` holding ``index``, and
        the index within it; the choice's trace entry is appended by the caller."""
        for k in pick.distinct:
            nxt = self._cons(pick.alts[k], after)
            c = self._count(nxt, names)
            if index < c:
                return (nxt, k), index
            index -= c
        raise IndexError(index)  # pragma: no cover - callers stay below the count

    def decode(self, index: int) -> tuple[list[str], list[tuple]]:
        out: list[str] = []
        trace: list[tuple] = []
        bound: dict[str, str] = {}
        marks: dict[str, int] = {}
        cell = self._start
        names: frozenset = frozenset()
        while cell is not None:
            item, rest = cell
            if isinstance(item, _End):
                value = "".join(out[marks[item.name] :])
                del out[marks[item.name] :]
                out.append(value)
                bound[item.name] = value
                cell = rest
            elif item.closed:
                digit, index = divmod(index, self._count(rest, names))
                item.decode(digit, out, trace)
                cell = rest
            elif isinstance(item, Seq):
                cell = self._push(item.children, rest)
            elif isinstance(item, Ref) and item.name in names:
                out.append(bound[item.name])
                cell = rest
            else:
                pick, after, inner = self._open_pick(item, rest, names)
                (cell, k), index = self._choose(pick, after, inner, index)
                if pick.entries is not None:
                    trace.extend(pick.entries[k])
                if inner is not names:
                    marks[item.name] = len(out)
                    names = inner
        return out, trace

    def _open_pick(self, item: Any, rest: Any, names: frozenset) -> tuple[Pick, Any, frozenset]:
        """For an open choice (a :class:`Pick`, or the first use of a shared slot's
        :class:`Ref`): the pick, what follows it, and the slots bound inside it."""
        if isinstance(item, Pick):
            return item, rest, names
        if isinstance(item, Ref):
            assert item.pick is not None
            return item.pick, self._cons(self._end(item.name), rest), names | {item.name}
        raise AssertionError(type(item))  # pragma: no cover
