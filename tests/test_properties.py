"""Property tests (hypothesis) on generated templates, checked against a reference
expander written here from the language's definition (docs/language.md):

* the combinatorial expansion equals the reference's, record for record and in odometer
  order — prompts and traces, every variable under the name docs/language.md gives it —
  and ``count()`` equals the number of expansions;
* the trace (in the order it was made) determines the prompt: no two expansions or random
  samples have the same trace and different prompts, and every traced value is one of
  the values the template lists for its variable;
* with unique words, all expansions are distinct records;
* every random sample is one of the expansions, every expansion is reached, and each
  one's share of the random samples matches the probability the weights give it;
* the same seed gives the same samples;
* arbitrary text and bytes only ever raise TemplateError.

Everything is derandomized: the examples are the same on every run.
"""

from __future__ import annotations

import itertools
import math
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stable_discovery.errors import TemplateError
from stable_discovery.language.program import load, loads
from stable_discovery.plugins import get_sampler

COMB = get_sampler("combinatorial")
RANDOM = get_sampler("random")
SHUFFLE = get_sampler("shuffle")

PROPS = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SPACE_LIMIT = 400  # larger generated spaces are skipped (the reference enumerates them)
N_RANDOM = 2000

# ---------------------------------------------------------------------------------------
# a small template model: what the generator draws, how it is written, what it means


@dataclass
class Text:
    source: str  # as written in the template
    value: str  # what it stands for


@dataclass
class Alt:
    parts: list
    weight: float | None = None  # None: no weight written (1)

    def body(self) -> str:
        return "".join(render(p) for p in self.parts)

    def source(self) -> str:
        w = "" if self.weight is None else f"{self.weight:g}::"
        return w + self.body()

    @property
    def w(self) -> float:
        return 1.0 if self.weight is None else self.weight

    @property
    def key(self) -> str:
        return self.body().strip()


@dataclass
class Choice:
    alts: list
    label: str | None = None  # {#label: …}


@dataclass
class Optional_:
    alts: list
    label: str | None = None  # [#label: …]


@dataclass
class Multi:
    prefix: str  # "2", "1-2", "-2", "2-"
    joiner: str | None
    alts: list  # of Alt; or a single wildcard name (str) for {2$$__w__}
    label: str | None = None  # {#label: 2$$…}

    def bounds(self, n: int) -> tuple[int, int]:
        p = self.prefix
        if p.startswith("-"):
            lo, hi = 1, int(p[1:])
        elif p.endswith("-"):
            lo, hi = int(p[:-1]), n
        elif "-" in p:
            lo, hi = (int(x) for x in p.split("-"))
        else:
            lo = hi = int(p)
        hi = min(hi, n)
        return min(lo, hi), hi


@dataclass
class SlotRef:
    name: str


@dataclass
class Wild:
    name: str


def _named(label: str | None) -> str:
    return "" if label is None else f"#{label}:"


def render(node) -> str:
    if isinstance(node, Text):
        return node.source
    if isinstance(node, Choice):
        return "{" + _named(node.label) + "|".join(a.source() for a in node.alts) + "}"
    if isinstance(node, Optional_):
        return "[" + _named(node.label) + "|".join(a.source() for a in node.alts) + "]"
    if isinstance(node, Multi):
        head = (
            "{"
            + _named(node.label)
            + node.prefix
            + "$$"
            + ("" if node.joiner is None else node.joiner + "$$")
        )
        if isinstance(node.alts, str):
            return head + "__" + node.alts + "__}"
        return head + "|".join(a.source() for a in node.alts) + "}"
    if isinstance(node, SlotRef):
        return f"<{node.name}>"
    if isinstance(node, Wild):
        return f"__{node.name}__"
    raise AssertionError(node)


def merged(node: Optional_) -> Choice | None:
    """``[{a|b}]`` (spaces around allowed): the inner choice, which the optional part's
    variable takes its values from, as it does for ``[a|b]``."""
    if len(node.alts) != 1:
        return None
    parts = node.alts[0].parts
    others = [p for p in parts if not isinstance(p, Text)]
    if len(others) != 1 or not isinstance(others[0], Choice) or others[0].label is not None:
        return None
    k = parts.index(others[0])
    if "".join(p.value for p in parts[:k]).strip() or "".join(p.value for p in parts[k + 1 :]).strip():
        return None
    return others[0]


def plain(node) -> str:
    """A part as written, without the weights of the choices in it, ``[{a|b}]`` as ``[a|b]``."""
    if isinstance(node, Choice):
        return "{" + _named(node.label) + "|".join(plain_alt(a) for a in node.alts) + "}"
    if isinstance(node, Optional_):
        inner = merged(node)
        if inner is not None:
            body = "".join(
                "|".join(plain_alt(a) for a in inner.alts) if p is inner else plain(p)
                for p in node.alts[0].parts
            )
            return "[" + _named(node.label) + body + "]"
        return "[" + _named(node.label) + "|".join(plain_alt(a) for a in node.alts) + "]"
    if isinstance(node, Multi) and not isinstance(node.alts, str):
        head = (
            "{"
            + _named(node.label)
            + node.prefix
            + "$$"
            + ("" if node.joiner is None else node.joiner + "$$")
        )
        return head + "|".join(plain_alt(a) for a in node.alts) + "}"
    return render(node)


def plain_alt(a: Alt) -> str:
    return "".join(plain(p) for p in a.parts)


def value(a: Alt) -> str:
    """An alternative's value in the trace (docs/language.md, The trace)."""
    return plain_alt(a).strip()


@dataclass
class Template:
    slots: dict  # name -> list[Alt] (definition order; includes prompt / negative)
    wildcards: dict  # name -> list[Alt] (lines)
    settings: dict = field(default_factory=dict)  # name -> list of (text, weight)
    bare: bool = False

    def source(self) -> str:
        if self.bare:
            return self.slots["prompt"][0].body()
        lines = [f"{n} = " + " | ".join(a.source() for a in alts) for n, alts in self.slots.items()]
        for name, values in self.settings.items():
            lines.append(f"@{name} = " + " | ".join(f"{w:g}::{t}" for t, w in values))
        return "\n".join(lines) + "\n"

    def write_wildcards(self, folder: Path) -> None:
        for name, lines in self.wildcards.items():
            (folder / f"{name}.txt").write_text("\n".join(a.body() for a in lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------
# the reference expander: paths in odometer order, with their random-sampling probability


@dataclass(frozen=True)
class Env:
    bound: tuple = ()  # ((slot, value), ...)
    trace: tuple = ()  # ((slot, (index, text)), ...)

    def get(self, name):
        for k, v in self.bound:
            if k == name:
                return v
        return None


class Reference:
    def __init__(self, t: Template) -> None:
        self.t = t
        self.names: dict[int, str] = {}  # id(choice, optional part or multi-select) -> name
        for name, alts in t.slots.items():
            self._name([a.parts for a in alts], name)
        for name in t.wildcards:
            self._name([a.parts for a in self.lines(name)], f"__{name}__")

    def _name(self, alternatives: list, prefix: str) -> None:
        """Names as docs/language.md gives them: {n} and [n] count the choices and
        optional parts directly inside a holder, across its alternatives."""
        braces = brackets = 0
        for parts in alternatives:
            for p in parts:
                if isinstance(p, (Choice, Multi)):
                    braces += 1
                    name = p.label or f"{prefix}{{{braces}}}"
                elif isinstance(p, Optional_):
                    brackets += 1
                    name = p.label or f"{prefix}[{brackets}]"
                else:
                    continue
                self.names[id(p)] = name
                if isinstance(p, Optional_) and merged(p) is not None:
                    self._name([a.parts for a in merged(p).alts], name)
                elif not (isinstance(p, Multi) and isinstance(p.alts, str)):
                    self._name([a.parts for a in p.alts], name)

    @staticmethod
    def traced(env: Env, name: str, index: int, text: str) -> Env:
        return Env(env.bound, env.trace + ((name, (index, text)),))

    @staticmethod
    def distinct(alts: list) -> list[tuple[int, Alt, float]]:
        """(first index, alternative, merged weight) of each group of identical ones."""
        out: list = []
        where: dict = {}
        for k, a in enumerate(alts):
            if a.key in where:
                i = where[a.key]
                out[i] = (out[i][0], out[i][1], out[i][2] + a.w)
                continue
            where[a.key] = len(out)
            out.append((k, a, a.w))
        return out

    def lines(self, name: str) -> list:
        """A wildcard's lines: blank lines are skipped, identical lines count once, each
        line has weight 1."""
        lines = [Alt(a.parts) for a in self.t.wildcards[name] if a.key]
        return [a for _, a, _ in self.distinct(lines)]

    def seq(self, parts: list, env: Env, trim: bool) -> Iterator[tuple[str, Env, float]]:
        merged: list = []
        for p in parts:  # adjacent text merges, then the alternative is trimmed
            if isinstance(p, Text) and merged and isinstance(merged[-1], Text):
                merged[-1] = Text(merged[-1].source + p.source, merged[-1].value + p.value)
            else:
                merged.append(p)
        if trim and merged and isinstance(merged[0], Text):
            merged[0] = Text("", merged[0].value.lstrip())
        if trim and merged and isinstance(merged[-1], Text):
            merged[-1] = Text("", merged[-1].value.rstrip())
        yield from self._seq(merged, 0, env)

    def _seq(self, parts, i, env):
        if i == len(parts):
            yield "", env, 1.0
            return
        for t1, e1, p1 in self.node(parts[i], env):
            for t2, e2, p2 in self._seq(parts, i + 1, e1):
                yield t1 + t2, e2, p1 * p2

    def pick(self, alts: list, env: Env, name: str | None = None) -> Iterator[tuple[str, Env, float]]:
        """One of ``alts``, traced as ``name`` (the first of identical ones, its value)."""
        groups = self.distinct(alts)
        total = sum(w for _, _, w in groups)
        for k, a, w in groups:
            e0 = env if name is None else self.traced(env, name, k, value(a))
            for t, e, p in self.seq(a.parts, e0, True):
                yield t, e, p * w / total

    def optional(self, n: Optional_, env: Env) -> Iterator[tuple[str, Env, float]]:
        name = self.names[id(n)]
        inner = merged(n)
        if len(n.alts) == 1 and inner is None:
            a = n.alts[0]
            if not a.key:  # `[ ]`: nothing to choose
                yield "", env, 1.0
                return
            yield "", env, 1.0 / (1.0 + a.w)
            for t, e, p in self.seq(a.parts, self.traced(env, name, 0, value(a)), True):
                yield t, e, p * a.w / (1.0 + a.w)
            return
        present = n.alts[0].w if inner is not None else 1.0
        alts = inner.alts if inner is not None else n.alts
        yield "", env, 1.0 / (1.0 + present)
        for t, e, p in self.pick(alts, env, name):
            yield t, e, p * present / (1.0 + present)

    def multi(self, n: Multi, env: Env) -> Iterator[tuple[str, Env, float]]:
        name = self.names[id(n)]
        alts = self.lines(n.alts) if isinstance(n.alts, str) else n.alts
        groups = self.distinct(alts)
        lo, hi = n.bounds(len(groups))
        joiner = "," if n.joiner is None else n.joiner
        first: dict[str, int] = {}
        for k, a in enumerate(alts):
            first.setdefault(value(a), k)
        items = [(f"{name}+{value(a)}", (first[value(a)], value(a))) for _, a, _ in groups]
        for k in range(lo, hi + 1):
            head = env if lo == hi else self.traced(env, f"{name}.count", k, str(k))
            for perm in itertools.permutations(range(len(groups)), k):
                prob = 1.0 / (hi - lo + 1)
                left = sum(w for _, _, w in groups)
                for g in perm:
                    prob *= groups[g][2] / left
                    left -= groups[g][2]
                picked = [(groups[g][1], items[g]) for g in perm]
                yield from self._joined(picked, 0, head, joiner, prob)

    def node(self, n, env: Env) -> Iterator[tuple[str, Env, float]]:
        if isinstance(n, Text):
            yield n.value, env, 1.0
        elif isinstance(n, Choice):
            yield from self.pick(n.alts, env, self.names[id(n)] if len(n.alts) > 1 else None)
        elif isinstance(n, Optional_):
            yield from self.optional(n, env)
        elif isinstance(n, Multi):
            yield from self.multi(n, env)
        elif isinstance(n, SlotRef):
            bound = env.get(n.name)
            if bound is not None:
                yield bound, env, 1.0
                return
            alts = self.t.slots[n.name]
            traced = not (n.name in ("prompt", "negative") and len(alts) == 1) and not self.t.bare
            groups = self.distinct(alts)
            total = sum(w for _, _, w in groups)
            for k, a, w in groups:
                e0 = self.traced(env, n.name, k, value(a)) if traced else env
                for t, e, p in self.seq(a.parts, e0, True):
                    yield t, Env(e.bound + ((n.name, t),), e.trace), p * w / total
        elif isinstance(n, Wild):
            lines = self.lines(n.name)
            yield from self.pick(lines, env, f"__{n.name}__" if len(lines) > 1 else None)
        else:
            raise AssertionError(n)

    def _joined(self, alts, i, env, joiner, prob):
        if i == len(alts):
            yield "", env, prob
            return
        alt, (item, chosen) = alts[i]
        for t1, e1, p1 in self.seq(alt.parts, Env(env.bound, env.trace + ((item, chosen),)), True):
            for t2, e2, p2 in self._joined(alts, i + 1, e1, joiner, prob * p1):
                yield (t1 if i == 0 else joiner + t1) + t2, e2, p2

    def records(self, ordered: bool = False) -> Iterator[tuple[tuple, float]]:
        """((prompt, negative, trace), probability) in odometer order; the trace sorted
        by name, or with ``ordered`` in the order it was made."""
        entries = ["prompt"] + (["negative"] if "negative" in self.t.slots else [])

        def run(i, env, prob, texts):
            if i == len(entries):
                yield from settings_product(0, env, prob, texts)
                return
            for t, e, p in self.node(SlotRef(entries[i]), env):
                yield from run(i + 1, e, prob * p, texts + [t])

        names = list(self.t.settings)

        def settings_product(j, env, prob, texts):
            if j == len(names):
                prompt = " ".join(texts[0].split())
                negative = " ".join(texts[1].split()) if len(texts) > 1 else ""
                trace = numbered(env.trace)
                items = tuple(trace.items()) if ordered else tuple(sorted(trace.items()))
                yield (prompt, negative, items), prob
                return
            values = self.t.settings[names[j]]
            total = sum(w for _, w in values)
            for k, (text, w) in enumerate(values):
                e = Env(env.bound, env.trace + ((names[j], (k, text)),))
                yield from settings_product(j + 1, e, prob * w / total, texts)

        yield from run(0, Env(), 1.0, [])


def numbered(trace: tuple) -> dict:
    """A name made again in one sample is numbered from its second time: ``n``, ``n#2``."""
    out: dict = {}
    seen: Counter = Counter()
    for name, chosen in trace:
        seen[name] += 1
        out[name if seen[name] == 1 else f"{name}#{seen[name]}"] = chosen
    return out


def record(sample) -> tuple:
    trace = {k: (v.index, v.text) for k, v in sample.trace.items()}
    return (sample.prompt, sample.negative, tuple(sorted(trace.items())))


# ---------------------------------------------------------------------------------------
# the generator

WORDS = [
    Text("a", "a"),
    Text("b", "b"),
    Text("cat", "cat"),
    Text("red dog", "red dog"),
    Text(" ", " "),
    Text("  x ", "  x "),
    # '$' and '%' are text unless a '{' follows (${…} and %{…} are dynamicprompts')
    Text("% ", "% "),
    Text("$ ", "$ "),
    Text("\\%", "%"),
    Text("\\~", "~"),
    Text("é", "é"),
    Text("\\{", "{"),
    Text("\\}", "}"),
    Text("\\|", "|"),
    Text("\\[", "["),
    Text("\\#", "#"),
    Text("\\$", "$"),
    Text("\\_", "_"),
    Text("\\\\", "\\"),
    Text("\\<", "<"),
    Text("\\(", "\\("),
    Text("<lora:q:1>", "<lora:q:1>"),
]
JOINERS = [None, " and ", "-", "+"]
JOINER_LIKE = re.compile(r"[^${}\\\n]*\$\$")  # what the grammar reads as a joiner
WEIGHTS = [None, None, None, 1, 2, 3, 0.5]


@st.composite
def templates(draw, unique: bool = False) -> Template:
    counter = itertools.count()
    labels = itertools.count()

    def label() -> str | None:
        """Now and then a name given in the template: {#n0: …}."""
        return f"n{next(labels)}" if draw(st.integers(0, 5)) == 0 else None

    def word() -> Text:
        if unique:
            w = f"t{next(counter)}"
            return Text(w, w)
        return draw(st.sampled_from(WORDS))

    n_wild = draw(st.integers(0, 2))
    wild_names = [f"w{i}" for i in range(n_wild)]
    n_slots = draw(st.integers(0, 3))
    slot_names = [f"s{i}" for i in range(n_slots)]
    used_wilds: set = set()

    def parts(depth: int, slots: list, wilds: list, allow_empty: bool = True) -> list:
        lo = 0 if allow_empty else 1
        n = draw(st.integers(lo, 3 if depth >= 2 else 2))
        out = []
        for _ in range(n):
            # with unique words, each wildcard is used once: `[__w__][__w__]` gives the
            # same prompt on two paths (the documented limitation)
            free = [w for w in wilds if not (unique and w in used_wilds)]
            kinds = ["text", "text"]
            if depth > 0:
                kinds += ["choice", "optional", "multi"]
            if slots:
                kinds += ["slot"]
            if free:
                kinds += ["wild"]
                if depth > 0:
                    kinds += ["multiwild"]
            kind = draw(st.sampled_from(kinds))
            if kind in ("wild", "multiwild"):
                name = draw(st.sampled_from(free))
                used_wilds.add(name)
            if kind == "text":
                out.append(word())
            elif kind == "slot":
                out.append(SlotRef(draw(st.sampled_from(slots))))
            elif kind == "wild":
                out.append(Wild(name))
            elif kind == "multiwild":
                out.append(Multi(prefix(), joiner(), name, label()))
            else:
                k = draw(st.integers(1 if kind == "optional" else 2, 3))
                alts = [alt(depth - 1, slots, wilds) for _ in range(k)]
                if kind == "choice":
                    out.append(Choice(alts, label()))
                elif kind == "optional":
                    out.append(Optional_(alts, label()))
                else:
                    multi = Multi(prefix(), joiner(), alts, label())
                    # `{2$$a $$b|c}` has the joiner `a `: literal `$$` right after the
                    # prefix reads as a joiner, so the generator does not write that
                    assume(
                        multi.joiner is not None
                        or not JOINER_LIKE.match(render(multi), len(_named(multi.label) + multi.prefix) + 3)
                    )
                    out.append(multi)
        return out

    def prefix() -> str:
        return draw(st.sampled_from(["1", "2", "3", "1-2", "-2", "2-", "0-1", "1-3"]))

    def joiner() -> str | None:
        return draw(st.sampled_from(JOINERS[1:] if unique else JOINERS))

    def alt(depth: int, slots: list, wilds: list) -> Alt:
        if unique:
            # a word in every alternative: nothing is ever empty in two ways
            return Alt([word()] + parts(depth, slots, wilds, allow_empty=True))
        return Alt(parts(depth, slots, wilds, allow_empty=True), draw(st.sampled_from(WEIGHTS)))

    # wildcard i may use wildcards after it; slot i may use slots and wildcards after it
    wildcards: dict = {}
    for i in reversed(range(n_wild)):
        later = wild_names[i + 1 :]
        lines = [
            Alt(([word()] if unique else []) + parts(1, [], later, allow_empty=False))
            for _ in range(draw(st.integers(1, 3)))
        ]
        lines.append(Alt([Text(f"line{i}", f"line{i}")]))  # never only blank lines
        wildcards[wild_names[i]] = lines
    slots: dict = {}
    for i in reversed(range(n_slots)):
        later = [] if unique else slot_names[i + 1 :]
        slots[slot_names[i]] = [alt(2, later, wild_names) for _ in range(draw(st.integers(1, 3)))]
    bare = not unique and n_slots == 0 and draw(st.booleans())
    if bare:
        body = parts(2, [], wild_names, allow_empty=True)
        return Template({"prompt": [Alt(body)]}, wildcards, {}, bare=True)
    if unique:
        # every slot used once, so distinct paths give distinct prompts
        prompt = [Alt([SlotRef(s) for s in slot_names] + parts(2, [], wild_names))]
    else:
        prompt = [alt(2, slot_names, wild_names) for _ in range(draw(st.integers(1, 2)))]
    ordered = {"prompt": prompt}
    if not unique and draw(st.booleans()):
        ordered["negative"] = [alt(1, slot_names, wild_names) for _ in range(draw(st.integers(1, 2)))]
    ordered.update(dict(reversed(list(slots.items()))))
    settings_: dict = {}
    if draw(st.booleans()):
        k = draw(st.integers(2, 3))
        settings_["steps"] = [(str(10 * (i + 1)), draw(st.sampled_from([1, 2, 3]))) for i in range(k)]
    return Template(ordered, wildcards, settings_)


def compile_template(t: Template, folder: Path):
    wild = folder / "wildcards"
    wild.mkdir()
    t.write_wildcards(wild)
    source = t.source()
    assume(source.strip())  # an empty template is refused (tests/test_language.py)
    return loads(source, wildcard_dirs=[wild])


def reference(t: Template) -> list[tuple[tuple, float]]:
    out = list(itertools.islice(Reference(t).records(), SPACE_LIMIT + 1))
    assume(len(out) <= SPACE_LIMIT)
    return out


# ---------------------------------------------------------------------------------------
# properties


@PROPS
@given(templates())
def test_expansion_equals_the_reference(t):
    expected = reference(t)
    with tempfile.TemporaryDirectory() as tmp:
        program = compile_template(t, Path(tmp))
        got = [record(s) for s in COMB.samples(program, 0, program.count() + 1, 0)]
        assert program.count() == len(got)
        assert got == [r for r, _ in expected]
        # random access agrees with the stream
        for i in range(0, len(got), max(1, len(got) // 7)):
            assert record(COMB.sample(program, i, 0)) == got[i]


@PROPS
@given(templates())
def test_random_samples_are_expansions_with_the_right_shares(t):
    expected = reference(t)
    prob: Counter = Counter()
    for r, p in expected:
        prob[r] += p
    assert abs(sum(prob.values()) - 1.0) < 1e-9
    with tempfile.TemporaryDirectory() as tmp:
        program = compile_template(t, Path(tmp))
        drawn = Counter(record(s) for s in RANDOM.samples(program, 0, N_RANDOM, 20240601))
    assert set(drawn) <= set(prob), set(drawn) - set(prob)
    for r, p in prob.items():
        mean = N_RANDOM * p
        if mean >= 15:
            assert r in drawn  # every expansion is reached
        sd = math.sqrt(N_RANDOM * p * (1 - p))
        assert abs(drawn[r] - mean) <= 5 * sd + 3, (r, drawn[r], mean)


@PROPS
@given(templates())
def test_the_trace_determines_the_prompt(t):
    """Re-rendering a sample from its trace — by the reference, which knows every path
    and its trace — gives the sample's prompt; every traced value is listed (``sdp
    check``) among the values its variable can take."""
    rendered: dict = {}
    for (prompt, negative, trace), _ in Reference(t).records(ordered=True):
        assert rendered.setdefault(trace, (prompt, negative)) == (prompt, negative)
        assume(len(rendered) <= SPACE_LIMIT)
    with tempfile.TemporaryDirectory() as tmp:
        program = compile_template(t, Path(tmp))
        variables = {v.name: v for v in program.variables}
        samples = list(RANDOM.samples(program, 0, 300, 5)) + list(COMB.samples(program, 0, SPACE_LIMIT, 0))
    for s in samples:
        trace = tuple((name, (c.index, c.text)) for name, c in s.trace.items())
        assert rendered[trace] == (s.prompt, s.negative)
        for name, c in s.trace.items():
            var = variables[re.sub(r"#\d+$", "", name)]
            assert c.text in var.values
            if var.kind != "item":
                assert var.values[c.index] == c.text


@PROPS
@given(templates(unique=True))
def test_expansions_are_distinct_records(t):
    expected = reference(t)
    with tempfile.TemporaryDirectory() as tmp:
        program = compile_template(t, Path(tmp))
        got = [record(s) for s in COMB.samples(program, 0, program.count(), 0)]
    assert len(got) == program.count() == len(expected)
    assert len(set(got)) == len(got)


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(templates(), st.integers(-(2**70), 2**70))
def test_same_seed_same_samples(t, seed):
    with tempfile.TemporaryDirectory() as tmp1, tempfile.TemporaryDirectory() as tmp2:
        a = compile_template(t, Path(tmp1))
        b = compile_template(t, Path(tmp2))
        first = [record(s) for s in RANDOM.samples(a, 0, 200, seed)]
        assert first == [record(s) for s in RANDOM.samples(b, 0, 200, seed)]
        assert record(RANDOM.sample(b, 150, seed)) == first[150]
        n = a.count()
        if n <= SPACE_LIMIT:
            shuffled = [record(s) for s in SHUFFLE.samples(a, 0, n, seed)]
            assert shuffled == [record(s) for s in SHUFFLE.samples(b, 0, n, seed)]
            assert sorted(shuffled) == sorted(record(s) for s in COMB.samples(a, 0, n, seed))


# ---------------------------------------------------------------------------------------
# arbitrary input only ever raises TemplateError

FUZZ = settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SPECIAL = st.text(alphabet="{}[]|<>#$_\\:=@\n\r\t -25ax%/*.", max_size=60)


def exercise(program) -> None:
    """A loaded program must also count and sample without another exception."""
    n = program.count()
    list(COMB.samples(program, 0, min(n, 5), 0))
    if n:
        COMB.sample(program, n - 1, 0)
        SHUFFLE.sample(program, n // 2, 0)
    list(RANDOM.samples(program, 0, 5, 0))


def only_template_errors(fn) -> None:
    try:
        program = fn()
    except TemplateError as exc:
        exc.format()  # formatting never fails either
        return
    exercise(program)


@FUZZ
@given(st.text(max_size=80))
def test_arbitrary_text(text):
    only_template_errors(lambda: loads(text))


@FUZZ
@given(SPECIAL)
def test_arbitrary_text_made_of_special_characters(text):
    only_template_errors(lambda: loads(text))


@FUZZ
@given(
    st.lists(
        st.sampled_from(
            [
                "prompt = ",
                "s = ",
                "@steps = ",
                "@size = ",
                "@seed = ",
                "\n",
                "\n  | ",
                "|",
                "{",
                "}",
                "[",
                "]",
                "<s>",
                "<prompt>",
                "__w__",
                "__w/*__",
                "2::",
                "{2$$",
                "{1-2$$ and $$",
                "a",
                " ",
                "#",
                "\\",
                "\\{",
                "0::",
                "<lora:x__y>",
                "10",
                "512x512",
            ]
        ),
        max_size=14,
    )
)
def test_arbitrary_token_soup(tokens):
    text = "".join(tokens)
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        (w / "w.txt").write_text("x\n{y|z}\n", encoding="utf-8")
        only_template_errors(lambda: loads(text, wildcard_dirs=[w]))


@FUZZ
@given(st.binary(max_size=80))
def test_arbitrary_bytes_in_a_file(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.sdp"
        path.write_bytes(data)
        only_template_errors(lambda: load(path))
        json_path = Path(tmp) / "t.json"
        json_path.write_bytes(data)
        only_template_errors(lambda: load(json_path))


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=60), SPECIAL)
def test_arbitrary_wildcard_files(data, line):
    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        (w / "bin.txt").write_bytes(data)
        (w / "txt.txt").write_text(line, encoding="utf-8")
        only_template_errors(lambda: loads("a __bin__ b", wildcard_dirs=[w]))
        only_template_errors(lambda: loads("a __txt__ {2$$__txt__}", wildcard_dirs=[w]))
        only_template_errors(lambda: loads("__*__", wildcard_dirs=[w]))
