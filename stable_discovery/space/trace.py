"""A trace entry: which alternative one named decision of a template took."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Chosen", "trace_dict"]


@dataclass(frozen=True, slots=True)
class Chosen:
    """Which value a traced variable took: its index and its text as written.

    (Slots, no ``__dict__``: a compiled template holds one per value of every variable.)
    """

    index: int
    text: str


def trace_dict(entries: list[tuple[str, Chosen]]) -> dict[str, Chosen]:
    """A sample's trace from its (name, Chosen) entries in the order they were made.

    A name made twice in one sample (a wildcard used in two places) is numbered from its
    second time on: ``__animal__``, ``__animal__#2``, ``__animal__#3``.
    """
    out = dict(entries)
    if len(out) == len(entries):
        return out
    out = {}
    seen: dict[str, int] = {}
    for name, chosen in entries:
        n = seen.get(name, 0) + 1
        seen[name] = n
        out[name if n == 1 else f"{name}#{n}"] = chosen
    return out
