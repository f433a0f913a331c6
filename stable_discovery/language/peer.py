"""dynamicprompts' constructs in the syntax tree: what maps onto this language is built
here, what does not is refused with its place and a hint that names this language's
way (docs/language.md, Coming from dynamicprompts).

* ``{!a|b}`` is ``{a|b}`` (combinatorial, which is what each sampler already does);
  ``{~a|b}`` (random even when combinations are listed) and ``{@a|b}`` (cyclical), and
  the same on wildcards (``__~name__``, ``__@name__``), are refused; ``__!name__`` is
  ``__name__``.
* ``__light/{indoor|outdoor}__`` is the choice ``{__light/indoor__|__light/outdoor__}``;
  wildcard parameters ``__name(var=value)__`` are refused.
* ``%{wrapper$$inner}`` is a :class:`~.syntax.Wrap`; ``${name=value}``,
  ``${name=!value}``, ``${name}``, ``${name:default}`` are :class:`~.syntax.VarSet` and
  :class:`~.syntax.VarRef` (resolved by :mod:`.definitions` and the compiler).
* ``{% … %}``, a statement of dynamicprompts' Jinja2 templates, is refused.
"""

from __future__ import annotations

import re

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.syntax import Alternative, Choice, Node, WildcardRef

__all__ = ["sampling_method", "wildcard_node", "wildcard_choice", "refuse_params", "variable_name"]

_METHOD_WORDS = {
    "~": (
        "random sampling",
        "a choice drawn at random even when the combinations are listed",
        "`sdp sample` draws every choice at random and `sdp expand` lists them all",
    ),
    "@": (
        "cyclical sampling",
        "a choice that goes through its alternatives in turn",
        "`--sampler combinatorial` (or `shuffle`) goes through the combinations in turn",
    ),
}


def sampling_method(method: str, source: Source, at: int, what: str) -> None:
    """Refuse dynamicprompts' ``~`` and ``@`` sampling methods (``!`` is accepted: it is
    what both samplers already do). ``what`` is the construct: ``choice`` or ``wildcard``."""
    if method not in _METHOD_WORDS:
        return
    name, meaning, instead = _METHOD_WORDS[method]
    literal = "{\\" + method + "…}" if what == "choice" else "__\\" + method + "…__"
    raise TemplateError(
        f"'{method}' is dynamicprompts' {name} of a {what} ({meaning}); this language has no such mode",
        source,
        at,
        hint=f"{instead}: leave the '{method}' out; for a literal '{method}' write {literal}",
    )


_WEIGHT = re.compile(r"[ \t]*((?:\d+(?:\.\d*)?|\.\d+))[ \t]*::")


def wildcard_node(value: str, start: int, source: Source) -> WildcardRef:
    """``__name__``, with dynamicprompts' sampling method ``!`` left out and ``~``, ``@``
    refused."""
    pattern = value[2:-2]
    if pattern[0] in "~@!":
        sampling_method(pattern[0], source, start + 2, "wildcard")
        pattern = pattern[1:].lstrip()
    return WildcardRef(pattern, start)


def wildcard_choice(value: str, start: int, source: Source) -> Node:
    """``__light/{indoor|2::outdoor}__``: the choice ``{__light/indoor__|2::__light/outdoor__}``;
    each alternative is the option as written (so that its weight can be written there)."""
    group = list(re.finditer(r"\{([^{}]*)\}", value))
    if len(group) > 1:
        raise TemplateError(
            "a wildcard name may contain one choice {…}, not several",
            source,
            start + group[1].start(),
            hint="list the names in a choice instead: {__a/c__|__a/d__|__b/c__|__b/d__}",
        )
    m = group[0]
    head, tail = value[2 : m.start()], value[m.end() : -2]
    if head[:1] in ("~", "@", "!"):
        sampling_method(head[0], source, start + 2, "wildcard")
        head = head[1:]
    alts = []
    pos = start + m.start() + 1
    for option in m.group(1).split("|"):
        w = _WEIGHT.match(option)
        weight = float(w.group(1)) if w else 1.0
        body = option[w.end() :] if w else option
        text = body.strip()
        at = pos + (len(option) - len(body)) + (len(body) - len(body.lstrip()))
        ref = WildcardRef(head + text + tail, start)
        alts.append(Alternative((ref,), weight, text, at))
        pos += len(option) + 1
    return Choice(tuple(alts), start)


def refuse_params(value: str, start: int, source: Source) -> TemplateError:
    """``__name(var=value)__``: dynamicprompts' wildcard parameters."""
    name = value[2 : value.index("(")]
    return TemplateError(
        f"__{name}(…)__ gives the wildcard variables of its own (dynamicprompts' wildcard parameters); "
        "this language binds a variable once for the whole prompt",
        source,
        start,
        hint=f"set it for the prompt, ${{var=!value}} or a slot `var = value`, and write __{name}__",
    )


_VARIABLE = re.compile(r"\$\{[ \t]*([A-Za-z_][A-Za-z0-9_-]*)[ \t]*(\?)?(=)?(!)?")


def variable_name(value: str, start: int, source: Source) -> tuple[str, bool]:
    """The name in a ``${…`` token, and whether a value set there is immediate (``=!``).
    A name with ``-`` (dynamicprompts allows it) is refused: it could not be a slot."""
    m = _VARIABLE.match(value)
    assert m is not None
    name = m.group(1)
    if "-" in name:
        raise TemplateError(
            f"the variable name {name!r} contains '-': here a variable is a slot, whose name is "
            "letters, digits and '_'",
            source,
            start + 2 + value[2:].index(name[0]),
            hint=f"rename it, for instance {name.replace('-', '_')}",
        )
    return name, m.group(4) is not None


def refuse_variable_in_name(at: int, source: Source) -> TemplateError:
    """``__animals/${kind}__``: a wildcard name built from a variable."""
    return TemplateError(
        "a wildcard name that uses a variable has no equivalent here (a variable is bound once "
        "for the whole prompt, a wildcard is looked up once)",
        source,
        at,
        hint="list the names in a choice: {__a/x__|__a/y__}, or __a/{x|y}__",
    )


def refuse_jinja(start: int, source: Source) -> TemplateError:
    """``{% … %}``: a statement of dynamicprompts' Jinja2 templates."""
    return TemplateError(
        "'{%' starts a Jinja2 statement (dynamicprompts' Jinja templates); this language has no "
        "Jinja mode, and would read it as a choice",
        source,
        start,
        hint="write the loop as a choice or a multi-select ({red|blue}, {2$$red|blue|green}) or a "
        "slot; for the text itself write \\{% … %\\}",
    )


def refuse_bad_variable(start: int, source: Source) -> TemplateError:
    """A ``${`` that starts no variable of dynamicprompts' forms."""
    return TemplateError(
        "'${' starts a dynamicprompts variable: ${name}, ${name=value}, ${name=!value} or ${name:default}",
        source,
        start,
        hint="for a literal '$' before a brace, write \\$",
    )
