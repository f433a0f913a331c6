"""Small questions about one experiment, asked of an open connection: its id, its
timestamps, how many of its samples are done and whether one is, the kinds of its
traced variables.

:class:`~stable_discovery.store.database.Store` answers them through its methods of the
same names; the query modules (:mod:`.gallery_queries`, :mod:`.stats_queries`) call them
with the connection they were given.
"""

from __future__ import annotations

import re
import sqlite3

__all__ = [
    "experiment_id",
    "experiment_stamp",
    "done_count",
    "done_counts",
    "is_done",
    "variable_kinds",
    "base_name",
]


def experiment_id(db: sqlite3.Connection, name: str) -> int | None:
    """The id of the experiment called ``name``, or None when there is none."""
    row = db.execute("SELECT id FROM experiments WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def experiment_stamp(db: sqlite3.Connection, experiment_id: int) -> tuple[float, float] | None:
    """``(created_at, updated_at)`` of an experiment (``updated_at`` moves whenever
    samples are recorded), or None when there is no such experiment."""
    row = db.execute(
        "SELECT created_at, updated_at FROM experiments WHERE id = ?", (experiment_id,)
    ).fetchone()
    return None if row is None else (float(row[0]), float(row[1]))


def done_count(db: sqlite3.Connection, experiment_id: int) -> int:
    """How many samples of the experiment are done (answered from ``samples_by_status``)."""
    row = db.execute(
        "SELECT COUNT(*) FROM samples WHERE experiment_id = ? AND status = 'done'", (experiment_id,)
    ).fetchone()
    return int(row[0])


def done_counts(db: sqlite3.Connection) -> dict[int, int]:
    """Done samples per experiment id (experiments without any are left out)."""
    return {
        int(eid): int(n)
        for eid, n in db.execute(
            "SELECT experiment_id, COUNT(*) FROM samples WHERE status = 'done' GROUP BY experiment_id"
        )
    }


def is_done(db: sqlite3.Connection, experiment_id: int, idx: int) -> bool:
    """Whether sample ``idx`` of the experiment is done."""
    row = db.execute(
        "SELECT 1 FROM samples WHERE experiment_id = ? AND idx = ? AND status = 'done'",
        (experiment_id, idx),
    ).fetchone()
    return row is not None


_REPEAT = re.compile(r"#\d+\Z")


def base_name(name: str) -> str:
    """A trace name without the number of a repeat (``__animal__#2`` → ``__animal__``)."""
    return _REPEAT.sub("", name) if "#" in name else name


def variable_kinds(db: sqlite3.Connection, experiment_id: int) -> dict[str, str]:
    """The experiment's traced variables, name → kind, in template order (empty for an
    experiment that was never opened by a version that records them)."""
    return dict(
        db.execute(
            "SELECT name, kind FROM variables WHERE experiment_id = ? ORDER BY position", (experiment_id,)
        )
    )
