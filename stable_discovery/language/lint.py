"""Warnings: what is valid here but likely meant otherwise (``sdp check`` shows them,
on stderr, and goes on).

* An optional part that looks like A1111's prompt editing or alternation
  (``[word:0.4]``, ``[a:b:0.25]``, ``[cat|dog]``): here it is an optional part; A1111
  syntax passes through escaped (``\\[cat\\|dog\\]``).
* ``//`` and ``/* … */``, which dynamicprompts reads as comments; here they are text.
* Wildcard folders: a folder link that leads back above itself (skipped), a YAML or
  JSON wildcard file that could not be read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from stable_discovery.errors import Source, TemplateError, TemplateWarning
from stable_discovery.language.syntax import Choice, Text

__all__ = ["a1111_optional", "peer_comments", "folder_warnings"]

#: ``word:0.4``, ``from:to:0.25``, ``to:10``: A1111's prompt editing inside [ ]
_EDITING = re.compile(r"[^\[\]|:]*(?::[^\[\]|:]*)?:[ \t]*(?:\d+(?:\.\d*)?|\.\d+)[ \t]*")
#: one word, as an alternative of A1111's alternation [cat|dog]
_WORD = re.compile(r"[^\s\[\]{}|<>\\#]+")


def a1111_optional(choice: Choice, src: Source) -> TemplateWarning | None:
    """A warning when the optional part ``choice`` looks like A1111 syntax."""
    if not choice.optional or choice.label is not None:
        return None
    present = choice.alternatives[1]
    parts = present.parts
    if len(parts) == 1 and isinstance(parts[0], Text) and _EDITING.fullmatch(present.text):
        t = present.text
        return TemplateWarning(
            f"[{t}] is an optional part here (absent, or the text {t!r}); A1111 reads it as prompt editing",
            src,
            choice.start,
            hint=f"for A1111's prompt editing write \\[{t}\\]; to keep the optional part without this "
            f"warning, write [{{{t}}}]",
        )
    inner = parts[0] if len(parts) == 1 and isinstance(parts[0], Choice) else None
    if inner is None or inner.start != choice.start or len(inner.alternatives) < 2:
        return None  # not [a|b] as written ([{a|b}] is an optional part on purpose)
    words = [a.text for a in inner.alternatives]
    plain = all(
        len(a.parts) == 1 and isinstance(a.parts[0], Text) and a.weight == 1.0 for a in inner.alternatives
    )
    if not plain or not all(_WORD.fullmatch(w) for w in words):
        return None
    shown = "|".join(words)
    return TemplateWarning(
        f"[{shown}] is an optional part here (absent, or one of {', '.join(words)}); A1111 reads it as "
        "alternating them at each step",
        src,
        choice.start,
        hint=f"for A1111's alternation write \\[{shown.replace('|', chr(92) + '|')}\\]; to keep the optional "
        f"part without this warning, write [{{{shown}}}]",
    )


_PEER_COMMENT = re.compile(r"(?:^|(?<=[\s,]))//|/\*.*?\*/", re.S)
_OUR_COMMENT = re.compile(r"\\.|#[^\n]*")


def peer_comments(source: Source) -> list[TemplateWarning]:
    """``//`` (at the start of a word) and ``/*``: comments in dynamicprompts, text here."""
    text = source.text
    if "//" not in text and "*/" not in text:
        return []
    skip = [(m.start(), m.end()) for m in _OUR_COMMENT.finditer(text) if m.group()[0] == "#"]
    out = []
    for m in _PEER_COMMENT.finditer(text):
        if any(a <= m.start() < b for a, b in skip):
            continue
        out.append(
            TemplateWarning(
                f"{m.group()[:2]!r} starts a comment in dynamicprompts; here it is text, and stays in "
                "the prompt",
                source,
                m.start(),
                hint="for a comment write '#' (to the end of the line)",
            )
        )
        if len(out) >= 5:
            break
    return out


def folder_warnings(
    cycles: Iterable[tuple[object, object]], broken: Iterable[TemplateError]
) -> list[TemplateWarning]:
    """What walking the wildcard folders skipped."""
    out = [
        TemplateWarning(f"the folder link {link} leads back to {target}, a folder above it: not followed")
        for link, target in cycles
    ]
    for exc in broken:
        out.append(
            TemplateWarning(
                f"this wildcard file could not be read (its wildcards are unknown): {exc.message}",
                exc.source,
                exc.offset,
                exc.hint,
            )
        )
    return out
