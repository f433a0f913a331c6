"""Which samples of an experiment a listing shows: the gallery's filters, as data."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ABSENT", "Filters"]

#: The choice that stands for "this slot is absent from the sample" (an optional part
#: left out, a slot inside an alternative that was not taken): ``stats`` shows it as an
#: ``(absent)`` row, a filter ``name:-1`` selects it.
ABSENT = -1


@dataclass(frozen=True)
class Filters:
    """Which samples of an experiment a listing shows.

    ``values`` maps a traced variable's name to the choice indices it may take: several
    choices of one name are alternatives (OR); several names must all match (AND); the
    choice :data:`ABSENT` matches the samples without the variable (an optional part or
    a multi-select item left out, a choice not reached).
    ``stars`` is ``"none"`` (unrated) or a minimum from 1 to 5.
    ``words``: each must occur in the prompt (case-insensitive for ASCII letters).
    """

    favourite: bool | None = None
    rejected: bool | None = None
    stars: str | None = None
    values: tuple[tuple[str, tuple[int, ...]], ...] = field(default_factory=tuple)
    words: tuple[str, ...] = field(default_factory=tuple)

    def without(self, name: str) -> Filters:
        """The same filters without those on ``name`` (what its own value counts follow)."""
        values = tuple(item for item in self.values if item[0] != name)
        return Filters(self.favourite, self.rejected, self.stars, values, self.words)

    @property
    def empty(self) -> bool:
        return (
            self.favourite is None
            and self.rejected is None
            and self.stars is None
            and not self.values
            and not self.words
        )
