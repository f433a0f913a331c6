"""The SQL behind ``sdp stats``: for every value of every traced slot and sampled setting
of an experiment, how many done samples have it, how many of them are winners and how
many are rejected; and the same totals for the whole experiment.

A *winner* is a favourite that is not rejected; with ``min_stars=N`` an image rated N
stars or more counts as well. Counting is ``GROUP BY`` on the ``choices`` index with the
marks joined from ``ratings``, so 100,000 samples take a fraction of a second.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from stable_discovery.store.lookups import done_count

__all__ = ["ValueCount", "ExperimentCounts", "experiment_counts"]

#: Only ratings of done samples count.
_DONE_JOIN = "JOIN samples s ON s.experiment_id = r.experiment_id AND s.idx = r.idx AND s.status = 'done'"
#: A rejected image is never a winner.
_COUNTED = " AND r.rejected = 0"


@dataclass(frozen=True)
class ValueCount:
    """One value (``name``, ``choice``) of an experiment and its counts.

    ``total``: done samples with the value, rejected or not; ``winners``: winners among
    them (never rejected ones); ``rejected``: rejected ones among them.
    """

    name: str
    choice: int
    text: str
    total: int
    winners: int
    rejected: int


@dataclass(frozen=True)
class ExperimentCounts:
    """Every value's counts, in (name, choice) order, and the experiment's totals."""

    values: tuple[ValueCount, ...]
    done: int
    rejected: int
    winners: int


def experiment_counts(
    db: sqlite3.Connection, experiment_id: int, min_stars: int | None = None
) -> ExperimentCounts:
    """The counts of an experiment's values and its done, rejected and winner totals."""
    winner = _winner_condition(min_stars)
    totals = _value_totals(db, experiment_id)
    winners = _marked_by_value(db, experiment_id, f"{winner}{_COUNTED}")
    rejected = _marked_by_value(db, experiment_id, "r.rejected = 1")
    values = tuple(
        ValueCount(
            name=name,
            choice=choice,
            text=_value_text(db, experiment_id, name, choice),
            total=total,
            winners=winners.get((name, choice), 0),
            rejected=rejected.get((name, choice), 0),
        )
        for (name, choice), total in totals.items()
    )
    all_rejected, all_winners = _marked_totals(db, experiment_id, winner)
    return ExperimentCounts(
        values=values, done=done_count(db, experiment_id), rejected=all_rejected, winners=all_winners
    )


def _winner_condition(min_stars: int | None) -> str:
    if min_stars is None:
        return "r.favourite = 1"
    return f"(r.favourite = 1 OR COALESCE(r.stars, 0) >= {int(min_stars)})"


def _value_totals(db: sqlite3.Connection, experiment_id: int) -> dict[tuple[str, int], int]:
    """Done samples per (name, choice). ``choices`` rows exist only for done samples
    (``Store.record_done`` writes both at once), so this reads the
    ``(experiment_id, name, choice)`` index alone."""
    return {
        (name, choice): n
        for name, choice, n in db.execute(
            "SELECT name, choice, COUNT(*) FROM choices WHERE experiment_id = ? GROUP BY name, choice",
            (experiment_id,),
        )
    }


def _value_text(db: sqlite3.Connection, experiment_id: int, name: str, choice: int) -> str:
    row = db.execute(
        "SELECT text FROM choices WHERE experiment_id = ? AND name = ? AND choice = ? LIMIT 1",
        (experiment_id, name, choice),
    ).fetchone()
    return row[0] if row else ""


def _marked_by_value(
    db: sqlite3.Connection, experiment_id: int, condition: str
) -> dict[tuple[str, int], int]:
    """Done samples per (name, choice) whose rating meets ``condition`` (on ``r``)."""
    return {
        (name, choice): n
        for name, choice, n in db.execute(
            f"SELECT c.name, c.choice, COUNT(*) FROM ratings r {_DONE_JOIN} "
            "JOIN choices c ON c.experiment_id = r.experiment_id AND c.idx = r.idx "
            f"WHERE r.experiment_id = ? AND {condition} GROUP BY c.name, c.choice",
            (experiment_id,),
        )
    }


def _marked_totals(db: sqlite3.Connection, experiment_id: int, winner: str) -> tuple[int, int]:
    """The experiment's rejected done samples and its winners."""
    rejected, winners = db.execute(
        "SELECT COALESCE(SUM(r.rejected), 0), "
        f"COALESCE(SUM(CASE WHEN {winner}{_COUNTED} THEN 1 ELSE 0 END), 0) "
        f"FROM ratings r {_DONE_JOIN} WHERE r.experiment_id = ?",
        (experiment_id,),
    ).fetchone()
    return int(rejected), int(winners)
