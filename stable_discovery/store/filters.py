"""Which samples of an experiment a listing shows: the gallery's filters, as data."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Filters", "ABSENT"]

#: The choice that stands for a variable's absence in a value filter.
ABSENT = -1


@dataclass(frozen=True)
class Filters:
    """Which samples of an experiment a listing shows.

    ``values`` maps a traced variable's name to the choice indices it may take: several
    choices of one name are alternatives (OR); several names must all match (AND). The
    choice :data:`ABSENT` is the variable's absence (an optional part or a multi-select
    item left out, a choice not reached).
    ``stars`` is ``"none"`` (unrated) or a minimum from 1 to 5.
    """

    favourite: bool | None = None
    rejected: bool | None = None
    stars: str | None = None
    values: tuple[tuple[str, tuple[int, ...]], ...] = field(default_factory=tuple)
