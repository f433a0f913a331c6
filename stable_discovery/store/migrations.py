"""The store's schema, as named migrations applied in order.

Each migration is a Python function that takes the connection and runs its statements;
its name (the function's name without the leading ``m``) is recorded in the table
``_migrations`` once it has been applied, in the same transaction as its changes. New
migrations go at the end; an applied migration is never edited.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from stable_discovery.store.faults import StoreFault

__all__ = ["MIGRATIONS", "migrate", "migration", "check_schema", "pending", "rollback"]

Migration = Callable[[sqlite3.Connection], None]

#: (name, function) in the order they are applied.
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration, named after the function (``m0001_x`` →
    ``0001_x``)."""
    MIGRATIONS.append((fn.__name__.removeprefix("m"), fn))
    return fn


@migration
def m0001_experiments_and_samples(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            template_path TEXT,
            template_text TEXT NOT NULL,
            template_hash TEXT NOT NULL,
            wildcards_hash TEXT NOT NULL,
            sampler TEXT NOT NULL,
            seed INTEGER NOT NULL,
            count INTEGER NOT NULL,
            backend TEXT NOT NULL,
            overrides TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE samples (
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            idx INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            negative TEXT NOT NULL,
            settings TEXT NOT NULL,
            seed INTEGER NOT NULL,
            status TEXT NOT NULL,
            file TEXT,
            batch_size INTEGER,
            seconds REAL,
            created_at REAL NOT NULL,
            PRIMARY KEY (experiment_id, idx)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE choices (
            experiment_id INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            name TEXT NOT NULL,
            choice INTEGER NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (experiment_id, idx, name)
        )
        """
    )
    db.execute("CREATE INDEX choices_by_value ON choices (experiment_id, name, choice)")


@migration
def m0002_ratings(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE ratings (
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            idx INTEGER NOT NULL,
            favourite INTEGER NOT NULL DEFAULT 0,
            stars INTEGER,
            rejected INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL,
            PRIMARY KEY (experiment_id, idx),
            CHECK (favourite IN (0, 1) AND rejected IN (0, 1)
                   AND (stars IS NULL OR stars BETWEEN 1 AND 5))
        )
        """
    )
    db.execute("CREATE INDEX ratings_favourites ON ratings (experiment_id, favourite)")


@migration
def m0003_gallery_indexes(db: sqlite3.Connection) -> None:
    """The gallery's filtered pages and counts over 100,000 samples.

    A covering index gives a slot value's sample indices without reading rows; it is
    partial on a condition true of every row (``name <> ''``), so that only queries that
    say so use it and the plans of every other query stay as they were. Done samples are
    counted and checked from an index too.
    """
    db.execute(
        "CREATE INDEX choices_by_value_idx ON choices (experiment_id, name, choice, idx) WHERE name <> ''"
    )
    db.execute("CREATE INDEX samples_by_status ON samples (experiment_id, status, idx)")


@migration
def m0004_archive_and_recent(db: sqlite3.Connection) -> None:
    """Experiments can be archived (hidden from the gallery's list unless asked), and the
    samples a running experiment recorded since a moment are found from an index, so that
    an open gallery follows a run without reading every row.
    """
    db.execute("ALTER TABLE experiments ADD COLUMN archived INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX samples_by_time ON samples (experiment_id, created_at)")


@migration
def m0005_trace_variables(db: sqlite3.Connection) -> None:
    """The traced variables of each experiment: name, kind (slot, setting, choice,
    optional, item, count, wildcard, file) and position in the template.

    Written when an experiment is opened; an experiment begun before (its samples trace
    slots and sampled settings only) gets its slots and settings alone, and keeps
    recording those, so that its old and new samples stay comparable.
    """
    db.execute(
        """
        CREATE TABLE variables (
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (experiment_id, name)
        )
        """
    )


@migration
def m0006_runs(db: sqlite3.Connection) -> None:
    """Each ``sdp run`` of an experiment is recorded: when it ran, how it was run (the
    speed knobs, the batch sizes that fitted, the encoders: what changes the speed but
    not the images' identity), how many images it made, how fast, and how long the
    first image took.
    """
    db.execute(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            started_at REAL NOT NULL,
            finished_at REAL,
            settings TEXT NOT NULL,
            generated INTEGER NOT NULL DEFAULT 0,
            seconds REAL,
            first_image_s REAL,
            outcome TEXT NOT NULL DEFAULT 'running'
        )
        """
    )
    db.execute("CREATE INDEX runs_by_experiment ON runs (experiment_id, started_at)")


def rollback(db: sqlite3.Connection) -> None:
    """Roll back the transaction in progress, if SQLite has not already done so (it
    does by itself on a full disk, and a second ``ROLLBACK`` would hide why)."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("stable-discovery")
    except Exception:  # noqa: BLE001 - not installed as a distribution (a checkout): no number
        return "this version"


def check_schema(db: sqlite3.Connection, path: Path | str, *, require: bool = False) -> set[str]:
    """The migrations applied to ``db``; a :class:`StoreFault` when one of them is not
    known to this version (a newer stable-discovery changed the store: writing or even
    reading it could damage it or misread it), or when ``require`` and the file is not
    a run store at all. Nothing is written."""
    try:
        applied = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        if not require:
            return set()
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        what = "is empty" if tables == 0 else "is an SQLite database, but not a run store"
        raise StoreFault(
            f"{path} {what}: give the folder `sdp run` wrote with --workspace, or rebuild the "
            f"store from the images with `sdp repair --workspace {Path(path).parent}`",
            "not-a-store",
        ) from None
    known = {name for name, _fn in MIGRATIONS}
    newer = sorted(applied - known)
    if newer:
        raise StoreFault(
            f"{path} was changed by a newer version of stable-discovery (its schema has "
            f"{', '.join(newer)}, which {_version()} does not know). Nothing was changed: "
            "upgrade stable-discovery (pip install -U stable-discovery) to use this workspace",
            "newer",
        )
    return applied


def pending(db: sqlite3.Connection) -> list[str]:
    """The names of the migrations ``db`` lacks (read only)."""
    try:
        applied = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    except sqlite3.OperationalError:
        applied = set()
    return [name for name, _fn in MIGRATIONS if name not in applied]


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations ``db`` lacks, each in its own transaction; their names.

    Safe when several processes open the same store at once: each migration is checked
    again under the write lock before it runs.
    """
    if not pending(db):
        return []
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    applied = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    done = []
    for name, fn in MIGRATIONS:
        if name in applied:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                fn(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                done.append(name)
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise
    return done
