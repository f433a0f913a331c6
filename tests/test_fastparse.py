"""The hand-written parser of the common subset (stable_discovery/fastparse.py).

It must give exactly the nodes Lark's path gives, or ``None`` (the caller then falls back
to Lark, so every error keeps coming from one place). The differential tests feed both
with generated lines, in the subset and just outside it; the reference is
``parser._parse_bare_lark``, the Lark path alone.

Also here: the regex bracket pre-check against the per-character loop it replaced, the
on-disk cache of the built Lark parsers, and the memoised random paths of the space.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language import fastparse, parser
from stable_discovery.language.fastparse import parse_bare_fast
from stable_discovery.language.parser import MAX_NESTING, _parse_bare_lark, parse_bare
from stable_discovery.language.program import loads
from stable_discovery.language.syntax import Alternative, Choice, SlotRef, Text, WildcardRef
from stable_discovery.language.wildcard_lines import parse_line
from stable_discovery.space import nodes as space
from stable_discovery.space.nodes import RAND_TABLE_LIMIT, Lit, Pick, Seq

DIFF = settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def lark_result(text: str, prepared: str | None = None):
    """What the Lark path gives for a text (prepared: with comments and newlines blanked):
    nodes, or the error as shown."""
    source = Source("<t>", text)
    try:
        return _parse_bare_lark(source, text if prepared is None else prepared)
    except TemplateError as exc:
        return ("error", exc.format())


def check(text: str) -> tuple | None:
    """The fast parser returns None or exactly Lark's nodes, on the text as it is and as
    parse_bare prepares it (comments and newlines blanked); parse_bare agrees with Lark."""
    fast_raw = parse_bare_fast(text)
    if fast_raw is not None:
        assert fast_raw == lark_result(text), text
    prepared = parser.blank_comments_and_newlines(text)
    fast = parse_bare_fast(prepared)
    expected = lark_result(text, prepared)
    if fast is not None:
        assert fast == expected, text
    try:
        public = parse_bare(Source("<t>", text))
    except TemplateError as exc:
        public = ("error", exc.format())
    assert public == expected, text
    return fast


# ---------------------------------------------------------------------------------------
# generated lines

# pieces in the subset (no '$': '{2$$' would be a multi-select)
IN_SUBSET = [
    "a",
    "b c",
    " ",
    "  ",
    "\t",
    "x y",
    "-",
    ".",
    ":",
    "::",
    "1",
    "2",
    "3.5",
    ">",
    "*",
    "/",
    "=",
    ",",
    "!",
    "é",
    "٣",
    "\u00a0",
    "\u3000",
    "_",
    "__",
    "___",
    "<",
    "< >",
    "<s>",
    "<_x9>",
    "<s t>",
    "<lora:x__y:0.5>",
    "<>",
    "__w__",
    "__a/b__",
    "__a_b__",
    "__a-b.c*__",
    "__w___",
    "__٣__",
    "__a b__",
    "__European Art/x__",
    "__a,b:c__",
    " __ x __ ",
    "$5",
    "%x",
    "|",
]
WEIGHTS = ["", "", "", "2::", " 3 ::", "0::", ".5::", "1.::", "\t7\t::", "10.25::", "٣::"]
# pieces just outside it
OUTSIDE = [
    "[",
    "]",
    "[x]",
    "\\",
    "\\{",
    "\\|",
    "#",
    "# c",
    "$$",
    "{2$$",
    "{1-2$$ and $$",
    "{-3$$",
    "{ 2 $$",
    "\n",
    "}",
    "{",
    "$",
    "$$",
    "%",
    "50%",
    "${a}",
    "${a=",
    "${a:",
    "${",
    "%{",
    "{~",
    "{ @",
    "{!",
    "{!2$$",
    "__~w__",
    "__!w__",
    "__a/{b|c}__",
    "__w(x=y)__",
    "\\~",
]


@st.composite
def templates(draw, depth: int = 0, outside: bool = False) -> str:
    """A run of items; choices nest up to 3 levels. ``outside`` sprinkles other pieces."""
    pieces = IN_SUBSET + (OUTSIDE if outside else [])
    out = []
    for _ in range(draw(st.integers(0, 5))):
        if depth < 3 and draw(st.integers(0, 3)) == 0:
            n = draw(st.integers(1, 4))
            alts = [draw(st.sampled_from(WEIGHTS)) + draw(templates(depth + 1, outside)) for _ in range(n)]
            out.append("{" + "|".join(alts) + "}")
        else:
            out.append(draw(st.sampled_from(pieces)))
    return "".join(out)


@pytest.mark.slow
@DIFF
@given(templates())
def test_the_subset_is_parsed_and_equals_lark(text):
    # '_' pieces around a choice can make a choice of wildcard names, __{a|b}__, and '!'
    # after '{' dynamicprompts' sampling method, {!a|b}: not in it
    assume(re.search(fastparse.WILDCARD_CHOICE_RE, text) is None)
    assume(re.search(fastparse.SAMPLED_LBRACE_RE, text) is None)
    assert check(text) is not None, text


@pytest.mark.slow
@DIFF
@given(templates(outside=True))
def test_near_the_subset_none_or_equal_to_lark(text):
    check(text)


@pytest.mark.slow
@DIFF
@given(st.lists(st.sampled_from(IN_SUBSET + OUTSIDE + WEIGHTS + ["{", "}", "{", "}", "|"]), max_size=16))
def test_token_soup_none_or_equal_to_lark(tokens):
    check("".join(tokens))


@pytest.mark.slow
@DIFF
@given(st.text(alphabet="{}|<>_ab2.:\t $[]\\#-/*", max_size=40))
def test_character_soup_none_or_equal_to_lark(text):
    check(text)


# ---------------------------------------------------------------------------------------
# unit tests


def test_nodes_of_a_typical_line():
    nodes = parse_bare_fast("a <s> __w__ {x| 2:: y }")
    assert nodes == (
        Text("a ", 0),
        SlotRef("s", 2),
        Text(" ", 5),
        WildcardRef("w", 6),
        Text(" ", 11),
        Choice(
            (
                Alternative((Text("x", 13),), 1.0, "x", 13),
                Alternative((Text("y", 20),), 2.0, "y", 20),
            ),
            12,
        ),
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "plain",
        "a | b",
        "{}",
        "{|}",
        "{ | }",
        "{a|{b|{c|d}}|}",
        "{3::}",
        "{3::|2::x}",
        "{ 3 ::a}",
        "{a 3::b}",
        "3::a",
        "{x|1.5::y|.5::z}",
        "<lora:name__v2:0.5> __a__b",
        "a_b__c",
        "__a___b__",
        "< <s> <t",
        "{<a|b>}",
        "  {a}  ",
        " x {a} y ",
        "{ a b }",
        "a$b {x$y}",
        "{" * MAX_NESTING + "x" + "}" * MAX_NESTING,
    ],
)
def test_examples_equal_lark(text):
    assert check(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "[x]",
        "a]",
        "\\{",
        "a \\ b",
        "# comment",
        "a\nb",
        "{2$$a|b}",
        "{1-2$$ and $$a|b}",
        "a$b {x$$y}",
        "{-$$a|b}",
        "{a",
        "a}",
        "{a}}",
        "{" * (MAX_NESTING + 1) + "x" + "}" * (MAX_NESTING + 1),
        "x" * (parser.MAX_SPECIAL + 1),
    ],
)
def test_outside_the_subset_falls_back(text):
    assert parse_bare_fast(text) is None
    check(text)


def test_errors_still_come_from_lark():
    for text in ["{a", "a}", "{a]", "{" * 70 + "}" * 70]:
        with pytest.raises(TemplateError) as fast_path:
            parse_bare(Source("t", text))
        with pytest.raises(TemplateError) as lark_path:
            _parse_bare_lark(Source("t", text), text)
        assert fast_path.value.format() == lark_path.value.format()


def test_wildcard_lines_use_it(tmp_path):
    line = "a {red|3::blue} ball in __place__ with <s>"
    assert parse_line(line, Source("w.txt", line)) == lark_result(line)
    (tmp_path / "place.txt").write_text("park\n{beach|pier}\n", encoding="utf-8")
    (tmp_path / "w.txt").write_text(line + "\n[x] \\{y\\}\n", encoding="utf-8")
    program = loads("s = big | small\nprompt = __w__", wildcard_dirs=[tmp_path])
    assert program.count() == 2 * (2 * 3) + 2


def _grammar_terminals() -> dict[str, str]:
    out = {}
    for line in parser.grammar_path().read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Z_]+)(?:\.\d+)?: /(.*)/$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_token_patterns_are_the_grammars():
    terminals = _grammar_terminals()
    assert terminals["SLOT"] == fastparse.SLOT_RE
    assert terminals["ANGLE"] == fastparse.ANGLE_RE
    assert terminals["WILDCARD"] == fastparse.WILDCARD_RE
    assert terminals["MULTI"] == fastparse.MULTI_RE
    assert terminals["WEIGHT"] == fastparse.WEIGHT_RE
    assert terminals["WILDCARD_CHOICE"] == fastparse.WILDCARD_CHOICE_RE
    assert terminals["WILDCARD_PARAMS"] == fastparse.WILDCARD_PARAMS_RE
    assert terminals["SAMPLED_LBRACE"] == fastparse.SAMPLED_LBRACE_RE
    # the text terminal stops at exactly the characters the fast parser looks at ('$'
    # and '%' before '{' make it give up: ${…} and %{…}; '$$' is text, merged)
    assert terminals["TEXT"] == r"(?:[^{}\[\]|<\\#_\n$%]|%(?!\{)|\$(?![{$]))+"


# ---------------------------------------------------------------------------------------
# the bracket pre-check: the regex version reports what the per-character loop did


def _check_brackets_loop(source: Source, text: str, newline_closes: bool) -> None:
    """The per-character implementation the regex replaced (reference)."""
    escapable = set("{}[]<>|#$_\\")
    opens: list[tuple[str, int]] = []
    i, n = 0, len(text)
    pairs = {"}": "{", "]": "["}
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2 if i + 1 < n and text[i + 1] in escapable else 1
            continue
        if ch == "#":
            nl = text.find("\n", i)
            i = n if nl == -1 else nl
            continue
        if ch == "\n" and newline_closes and opens:
            kind, at = opens[-1]
            line, col = source.line_col(at)
            raise TemplateError(
                f"unclosed '{kind}' opened at {line}:{col}",
                source,
                i,
                hint=f"close it with '{'}' if kind == '{' else ']'}' on the same line, "
                "or write \\" + kind + " for a literal character",
            )
        named = re.match(r"[{\[]#[A-Za-z_][A-Za-z0-9_]*:", text[i:])
        if ch in "{[":
            opens.append((ch, i))
            if len(opens) > MAX_NESTING:
                raise TemplateError(
                    f"nesting deeper than {MAX_NESTING} levels of {{}} and []",
                    source,
                    i,
                    hint="flatten the template, or move inner parts into slots",
                )
            if named:  # {#name: and [#name: open like { and [ (the '#' is no comment)
                i += len(named.group()) - 1
        elif ch in "}]":
            if not opens:
                raise TemplateError(
                    f"'{ch}' without a matching '{pairs[ch]}'",
                    source,
                    i,
                    hint=f"write \\{ch} for a literal '{ch}'",
                )
            kind, at = opens.pop()
            if kind != pairs[ch]:
                line, col = source.line_col(at)
                raise TemplateError(
                    f"'{kind}' opened at {line}:{col} is closed by '{ch}'",
                    source,
                    i,
                    hint=f"close it with '{'}' if kind == '{' else ']'}'",
                )
        i += 1
    if opens:
        kind, at = opens[-1]
        line, col = source.line_col(at)
        raise TemplateError(
            f"unclosed '{kind}' opened at {line}:{col}",
            source,
            len(text),
            hint=f"add the closing '{'}' if kind == '{' else ']'}'",
        )


def _bracket_outcome(fn, text: str, newline_closes: bool):
    source = Source("<t>", text)
    try:
        fn(source, text, newline_closes)
    except TemplateError as exc:
        return exc.format()
    return None


@pytest.mark.slow
@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.text(alphabet="{}[]\\#\n a|<_:", max_size=40), st.booleans())
def test_bracket_check_reports_what_the_loop_did(text, newline_closes):
    assert _bracket_outcome(parser._check_brackets, text, newline_closes) == _bracket_outcome(
        _check_brackets_loop, text, newline_closes
    )


def test_bracket_check_nesting_limit():
    deep = "[" * (MAX_NESTING + 1)
    assert "nesting deeper" in _bracket_outcome(parser._check_brackets, deep, False)
    assert _bracket_outcome(parser._check_brackets, deep, False) == _bracket_outcome(
        _check_brackets_loop, deep, False
    )


# ---------------------------------------------------------------------------------------
# the Lark parsers are cached on disk


def test_lark_cache_is_written_and_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(parser, "_cache_dir", lambda: tmp_path / "cache")
    build = parser._lark.__wrapped__  # the uncached function (no per-process memo)
    text = "{a|2::b} [c] \\{ <s> __w__ {2$$x|y}"
    first = build("bare")
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].name.startswith("sdp-lark-bare-")
    second = build("bare")  # from the file
    assert list((tmp_path / "cache").iterdir()) == files
    assert first.parse(text) == second.parse(text)  # (rule names: str vs Token("RULE"))
    build("file")
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_a_changed_grammar_gets_another_cache_file():
    a = parser._lark_cache_file('start: A\nA: "a"\n', "bare")
    b = parser._lark_cache_file('start: A\nA: "b"\n', "bare")
    if a is not None:
        assert a != b


def test_lark_works_without_a_writable_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setattr(parser, "_cache_dir", lambda: blocker / "cache")
    assert parser._lark.__wrapped__("bare").parse("{a|b}") is not None
    monkeypatch.setattr(parser, "_cache_dir", lambda: None)
    assert parser._lark.__wrapped__("bare").parse("{a|b}") is not None


def test_a_damaged_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr(parser, "_cache_dir", lambda: tmp_path)
    parser._lark.__wrapped__("bare")
    (path,) = tmp_path.iterdir()
    path.write_bytes(path.read_bytes()[:100])
    assert parser._lark.__wrapped__("bare").parse("{a|b}") == parser._lark("bare").parse("{a|b}")


# ---------------------------------------------------------------------------------------
# random paths: memoised per node, a large pick gives up at once


def _reference_paths(node, limit):
    """The unmemoised computation (as it was before the memo)."""
    if isinstance(node, Lit):
        return [(node.text, (), 1.0)]
    if isinstance(node, Seq):
        acc = [("", (), 1.0)]
        for c in node.children:
            sub = _reference_paths(c, limit)
            if sub is None or len(acc) * len(sub) > limit:
                return None
            acc = [(t1 + t2, tr1 + tr2, p1 * p2) for t1, tr1, p1 in acc for t2, tr2, p2 in sub]
        return acc
    if isinstance(node, Pick):
        out = []
        weights = [b - a for a, b in zip([0.0] + node.cum[:-1], node.cum, strict=False)]
        for k, a in enumerate(node.alts):
            sub = _reference_paths(a, limit)
            if sub is None or len(out) + len(sub) > limit:
                return None
            share = weights[k] / node.total
            entry = node.entries[k] if node.entries is not None else ()
            out.extend((t, entry + tr, p * share) for t, tr, p in sub)
        return out
    return None


@pytest.mark.parametrize(
    "template",
    [
        "a {b|c|2::d} {e|{f|g}} [h]",
        "s = x | 3:: y | {p|q}\nprompt = <s> and <s>, {1|2|3|4}",
        "s = {a|b}{c|d}{e|f}{g|h}{i|j}{k|l}{m|n}{o|p}{q|r}\nprompt = <s> {1|2}",
        "prompt = {2$$a|b|c} {x|y}",
    ],
)
def test_memoised_paths_equal_the_reference(template, monkeypatch):
    for limit in (1, 4, 16, RAND_TABLE_LIMIT):
        root = loads(template).root
        expected = _reference_paths(root, limit)
        assert root.rand_paths(limit) == expected  # outside rand_fn(): no memo
        monkeypatch.setattr(space, "_memoised", [])  # as inside rand_fn()
        assert root.rand_paths(limit) == expected
        assert root.rand_paths(limit) == expected  # from the memo
        assert space._memoised
        monkeypatch.setattr(space, "_memoised", None)


def test_memos_are_freed_once_the_functions_are_built():
    program = loads(
        "s = {a|b} {c|d} | e\nprompt = <s> {x|y} " + " ".join(f"{{p{k}|q{k}}}" for k in range(12))
    )
    program.root.rand_fn()
    assert space._memoised is None
    stack, seen = [program.root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        assert getattr(node, "_paths", None) is None
        stack.extend(getattr(node, "children", ()) or getattr(node, "alts", ()))
    assert len(seen) > 20


def test_each_node_computes_its_paths_once(monkeypatch):
    calls = []
    original = Seq._rand_paths

    def counting(self, limit):
        calls.append(id(self))
        return original(self, limit)

    monkeypatch.setattr(Seq, "_rand_paths", counting)
    program = loads(
        "prompt = "
        + " ".join("{a|b} x" for _ in range(12))
        + " {"
        + "|".join(f"{{c{k}|d{k}}} y" for k in range(600))
        + "}"
    )
    program.root.rand_fn()
    assert len(calls) == len(set(calls))


def test_a_pick_with_more_alternatives_than_the_limit_gives_up_at_once(monkeypatch):
    alts = [Lit(str(k)) for k in range(RAND_TABLE_LIMIT + 1)]
    pick = Pick(alts, [1.0] * len(alts))
    monkeypatch.setattr(Lit, "rand_paths", lambda self, limit: pytest.fail("asked an alternative"))
    assert pick.rand_paths(RAND_TABLE_LIMIT) is None


# ---------------------------------------------------------------------------------------
# one walk measures the longest prompt and the depth of the compiled tree


def _max_length_reference(root):
    """The two walks measure() replaced (as they were), for reference."""
    from stable_discovery.space.nodes import Multi, Ref

    length = {}
    stack = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in length:
            continue
        if isinstance(node, Seq):
            kids = node.children
        elif isinstance(node, (Pick, Multi)):
            kids = node.alts
        elif isinstance(node, Ref):
            kids = (node.pick,) if node.pick is not None else ()
        else:
            length[id(node)] = len(node.text) if isinstance(node, Lit) else 0
            continue
        if not ready:
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in length)
            continue
        sizes = [length[id(k)] for k in kids]
        if isinstance(node, Seq):
            length[id(node)] = sum(sizes)
        elif isinstance(node, Multi):
            top = sorted(sizes, reverse=True)[: node.hi]
            length[id(node)] = sum(top) + len(node.joiner) * max(0, node.hi - 1)
        else:
            length[id(node)] = max(sizes, default=0)
    return length[id(root)]


def _node_depth_reference(root):
    from stable_discovery.space.nodes import Multi, Ref

    depth = {}
    stack = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in depth:
            continue
        if isinstance(node, Seq):
            kids = node.children
        elif isinstance(node, (Pick, Multi)):
            kids = node.alts
        elif isinstance(node, Ref):
            kids = (node.pick,) if node.pick is not None else ()
        else:
            kids = ()
        if ready:
            depth[id(node)] = 1 + max((depth[id(k)] for k in kids), default=0)
        else:
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in depth)
    return depth[id(root)]


@pytest.mark.parametrize(
    "template",
    [
        "a",
        "a {b|cc|{ddd|e}} [f]",
        "s = x | {yy|zzz}\nt = <s> <s>\nprompt = <t>, <s> {1-2$$ and $$p|qq|rrr}\nnegative = <s>",
        "prompt = {2$$a|bb|ccc|dddd} __w__ __w__",
        "s = __w__\nprompt = <s> [<s>] {2-$$__w__}",
    ],
)
def test_one_walk_measures_what_the_two_did(template, tmp_path):
    (tmp_path / "w.txt").write_text("x\n{y|zz}\nlong line of text\n<lora:a__b>\n", encoding="utf-8")
    from stable_discovery.language.measure import measure

    root = loads(template, wildcard_dirs=[tmp_path]).root
    assert measure(root) == (_max_length_reference(root), _node_depth_reference(root))
