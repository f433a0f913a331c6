"""What ``sdp repair`` needs from the database: whether it is damaged, setting a
damaged one aside (renamed, never deleted), the marks that can still be read from it,
and putting those marks back into the rebuilt store."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from stable_discovery.store.database import DB_FILE, Store
from stable_discovery.store.migrations import rollback

__all__ = ["Mark", "damage", "set_aside", "salvage_marks", "restore_marks"]

#: (experiment name, index, favourite, stars, rejected, updated_at)
Mark = tuple[str, int, int, int | None, int, float]


def damage(store: Store) -> list[str]:
    """What SQLite's ``quick_check`` finds wrong with the store (empty: nothing)."""
    try:
        rows = [str(r[0]) for r in store.db.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def set_aside(workspace: Path) -> Path:
    """Rename the workspace's database (with its ``-wal`` and ``-shm`` files) to
    ``discovery.db.damaged-YYYYmmdd-HHMMSS``; the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = workspace / f"{DB_FILE}.damaged-{stamp}"
    n = 2
    while target.exists():
        target = workspace / f"{DB_FILE}.damaged-{stamp}-{n}"
        n += 1
    for suffix in ("-wal", "-shm", ""):
        source = workspace / (DB_FILE + suffix)
        if source.exists():
            os.replace(source, Path(str(target) + suffix))
    return target


def salvage_marks(db_path: Path) -> list[Mark]:
    """The favourites, stars and rejections that can still be read from a (damaged)
    database, as far as its pages allow."""
    marks: list[Mark] = []
    try:
        db = sqlite3.connect(db_path.absolute().as_uri() + "?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return marks
    try:
        rows = db.execute(
            "SELECT e.name, r.idx, r.favourite, r.stars, r.rejected, r.updated_at "
            "FROM ratings r JOIN experiments e ON e.id = r.experiment_id"
        )
        for row in rows:
            marks.append((str(row[0]), int(row[1]), int(row[2]), row[3], int(row[4]), float(row[5])))
    except sqlite3.Error:
        pass  # a damaged page: keep what was read before it
    finally:
        db.close()
    return marks


def restore_marks(store: Store, marks: list[Mark]) -> int:
    """Put salvaged marks back for the samples the rebuilt store has; how many."""
    restored = 0
    store.db.execute("BEGIN IMMEDIATE")
    try:
        for name, idx, favourite, stars, rejected, updated_at in marks:
            row = store.db.execute(
                "SELECT e.id FROM experiments e JOIN samples s ON s.experiment_id = e.id "
                "WHERE e.name = ? AND s.idx = ? AND s.status = 'done'",
                (name, idx),
            ).fetchone()
            if row is None:
                continue
            cur = store.db.execute(
                "INSERT OR IGNORE INTO ratings (experiment_id, idx, favourite, stars, rejected, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (row[0], idx, 1 if favourite else 0, stars, 1 if rejected else 0, updated_at),
            )
            restored += cur.rowcount
        store.db.execute("COMMIT")
    except BaseException:
        rollback(store.db)
        raise
    return restored
