"""Which samples of an experiment a listing shows: the gallery's filters, as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

__all__ = ["Filters"]


@dataclass(frozen=True)
class Filters:
    """Which samples of an experiment a listing shows.

    ``values`` maps a slot or setting name to the choice indices it may take: several
    choices of one name are alternatives (OR); several names must all match (AND).
    ``stars`` is ``"none"`` (unrated) or a minimum from 1 to 5.
    """

    favourite: Optional[bool] = None
    rejected: Optional[bool] = None
    stars: Optional[str] = None
    values: tuple[tuple[str, tuple[int, ...]], ...] = field(default_factory=tuple)
