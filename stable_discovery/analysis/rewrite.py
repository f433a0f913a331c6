"""Edits of a template's text that change weights and nothing else.

Used by :mod:`.refine`: a weight ``N::`` is written before an alternative (replacing the
one it had), a definition's alternatives are rewritten with their separators and line
comments kept, and a wildcard file's lines get weights of their own. Everything not
edited — comments, layout, spacing — stays byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stable_discovery.language.syntax import Alternative, Choice, Definition

__all__ = [
    "Edit",
    "apply_edits",
    "format_weight",
    "weight_edit",
    "choice_edits",
    "definition_edit",
    "opener_end",
    "alt_end",
    "line_edit",
]

_WEIGHT_BEFORE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)[ \t]*::([ \t]*)\Z")


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]`` with ``new``; edits at one place apply in ``order``."""

    start: int
    end: int
    new: str
    order: int = 0


class OverlappingEdits(AssertionError):
    """Two edits of one text overlap (a bug in the rewriting)."""


def format_weight(w: float) -> str:
    """A weight as the grammar reads it: plain decimals, 3 significant digits, no exponent."""
    if w <= 0:
        return "0"
    text = f"{w:.3g}"
    if "e" in text:
        text = f"{w:.6f}".rstrip("0").rstrip(".")
        if text in ("", "0"):
            text = "0.000001"
    return text


def apply_edits(text: str, edits: Sequence[Edit], start: int = 0, end: int | None = None) -> str:
    """``text[start:end]`` with ``edits`` (all inside that range) applied."""
    end = len(text) if end is None else end
    out, pos = [], start
    for e in sorted(edits, key=lambda e: (e.start, e.order)):
        if e.start < pos:
            raise OverlappingEdits(f"overlapping edits at {e.start} while rewriting the template")
        out.append(text[pos : e.start])
        out.append(e.new)
        pos = e.end
    out.append(text[pos:end])
    return "".join(out)


# ---------------------------------------------------------------------------------------
# positions


def alt_end(alt: Alternative) -> int:
    return alt.start + len(alt.text)


def opener_end(choice: Choice) -> int:
    """Where a choice's or optional part's first alternative may begin: after ``{``,
    ``[``, ``{#name:`` or ``[#name:`` (a multi-select's prefix is skipped by the weight
    search, which looks back from each alternative)."""
    return choice.start + 1 + (len(choice.label) + 2 if choice.label is not None else 0)


def weight_edit(text: str, region_start: int, alt: Alternative, weight: float, order: int = 0) -> Edit:
    """Write ``weight`` before ``alt``: replace its ``N::`` (keeping the spaces after it),
    or insert one right after the separator before it (``{ a`` → ``{2:: a``; after a
    name, ``{#c: a`` → ``{#c: 2::a``)."""
    m = _WEIGHT_BEFORE.search(text, region_start, alt.start)
    new = format_weight(weight) + "::"
    if m is not None:
        return Edit(m.start(), alt.start, new + m.group(1), order)
    at = alt.start
    while at > region_start and text[at - 1] in " \t":
        at -= 1
    if at > 0 and text[at - 1] not in "{[|":
        at = alt.start  # after {#name: or a multi-select's $$: the weight goes by the text
    return Edit(at, at, new, order)


def choice_edits(text: str, choice: Choice, weights: Sequence[float], order: int = 0) -> list[Edit]:
    """A weight before each alternative of an inline choice or multi-select."""
    edits = []
    region = choice.start
    for alt, w in zip(choice.alternatives, weights, strict=True):
        edits.append(weight_edit(text, region, alt, w, order))
        region = alt_end(alt)
    return edits


# ---------------------------------------------------------------------------------------
# definitions


def _line_end(text: str, pos: int) -> int:
    nl = text.find("\n", pos)
    return len(text) if nl == -1 else nl


def _eq_end(text: str, d: Definition) -> int:
    return text.index("=", d.start + len(d.name)) + 1


def definition_region(text: str, d: Definition) -> tuple[int, int]:
    """The part of the text :func:`definition_edit` replaces: from after ``=`` to the end
    of the line of the last alternative."""
    return _eq_end(text, d), _line_end(text, alt_end(d.alternatives[-1]))


def definition_edit(
    text: str,
    d: Definition,
    weights: Sequence[float | None],
    inner: Callable[[int, int], str] | None = None,
) -> Edit:
    """Rewrite a definition's alternatives: ``weights[k]`` is the new weight, or None to
    remove the alternative. Separators, comments and texts of kept ones are unchanged;
    ``inner(start, end)`` gives a kept alternative's text (with edits inside it)."""
    alts = d.alternatives
    eq_end, region_end = definition_region(text, d)
    ends = [alt_end(a) for a in alts]
    wstarts = []
    for k, alt in enumerate(alts):
        region = eq_end if k == 0 else ends[k - 1]
        m = _WEIGHT_BEFORE.search(text, region, alt.start)
        wstarts.append(m.start() if m else alt.start)
    # segment k runs from seg_starts[k] to seg_starts[k+1]: its separator (up to wstarts[k]),
    # its weight and text, and what follows on its line (a comment) when the next
    # alternative starts on another line
    seg_starts = [eq_end]
    for k in range(1, len(alts)):
        between = text[ends[k - 1] : wstarts[k]]
        seg_starts.append(text.index("\n", ends[k - 1]) if "\n" in between else ends[k - 1])
    seg_starts.append(region_end)
    first_sep = text[eq_end : wstarts[0]]
    copy = inner or (lambda a, b: text[a:b])
    pieces: list[str] = []
    for k, alt in enumerate(alts):
        w = weights[k]
        sep = first_sep if not pieces else text[seg_starts[k] : wstarts[k]]
        if w is None:
            # a dropped alternative sharing a line with a kept one leaves that line's
            # comment in place; one on a line of its own goes with its comment
            if pieces and "\n" not in sep:
                pieces.append(text[ends[k] : seg_starts[k + 1]])
            continue
        pieces.append(sep)
        if sep.endswith(("|", "=")):
            pieces.append(" ")
        pieces.append(format_weight(w) + (":: " if alt.text else "::"))
        pieces.append(copy(alt.start, ends[k]) + text[ends[k] : seg_starts[k + 1]])
    return Edit(eq_end, region_end, "".join(pieces))


# ---------------------------------------------------------------------------------------
# wildcard lines


def line_edit(line: str, body: str, weight: float | None) -> Edit | None:
    """The edit that gives a wildcard line (stripped, as written) the weight ``weight``:
    ``N:: `` replacing the weight it had (``body`` is its text after the weight)."""
    if weight is None:
        return None
    prefix = len(line) - len(body)
    return Edit(0, prefix, format_weight(weight) + ":: ", -1)
