"""A trace entry: which alternative one named decision of a template took."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Chosen"]


@dataclass(frozen=True)
class Chosen:
    """Which alternative a slot or sampled setting took: its index and its text as written."""

    index: int
    text: str
