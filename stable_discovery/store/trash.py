"""The workspace's trash: experiments removed with ``sdp rm`` wait in ``<workspace>/.trash/``
until ``sdp rm --purge`` empties it, and ``sdp rm --restore`` brings one back.

An entry is a folder ``.trash/<name>.<YYYYmmdd-HHMMSS>/`` holding ``experiment.db`` (a
SQLite file with the experiment's rows: ``experiments``, ``samples``, ``choices``,
``ratings``, ``variables``) and ``images/`` (the experiment's folder, moved as it was). Removing copies
the rows into the entry, moves the folder, then deletes the rows in one transaction:
a crash at any point leaves everything either in the store or in the entry (at worst
in both), never nowhere. The caller holds the experiment's lock, so no run writes to it
meanwhile. Nothing outside the workspace is touched.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from stable_discovery.errors import UsageError
from stable_discovery.store.database import Experiment, Store, StoreError, check_name
from stable_discovery.store.images import LOCK_FILE, SPEC_FILE, is_temp

__all__ = [
    "TRASH_DIR",
    "PurgeResult",
    "TrashEntry",
    "move_to_trash",
    "trash_entries",
    "find_entry",
    "purge",
    "restore",
]

TRASH_DIR = ".trash"
_ROWS_FILE = "experiment.db"
_IMAGES = "images"
#: The tables an experiment's rows live in, with the column naming the experiment.
_TABLES = (
    ("experiments", "id"),
    ("samples", "experiment_id"),
    ("choices", "experiment_id"),
    ("ratings", "experiment_id"),
    ("runs", "experiment_id"),
    ("variables", "experiment_id"),
)


@dataclass(frozen=True)
class TrashEntry:
    """An experiment in the trash: its name, when it was removed, what it holds."""

    path: Path
    name: str
    removed_at: float
    samples: int
    images: int

    @property
    def label(self) -> str:
        return self.path.name


def _entry_path(workspace: Path, name: str) -> Path:
    base = f"{name}.{time.strftime('%Y%m%d-%H%M%S')}"
    path = workspace / TRASH_DIR / base
    n = 2
    while os.path.lexists(path):
        path = workspace / TRASH_DIR / f"{base}-{n}"
        n += 1
    return path


def _copy_rows(store: Store, exp: Experiment, rows_file: Path) -> None:
    """Copy the experiment's rows of every table into a new SQLite file."""
    db = store.db
    db.execute("ATTACH DATABASE ? AS trash", (str(rows_file),))
    try:
        db.execute("BEGIN")
        for table, column in _TABLES:
            db.execute(
                f"CREATE TABLE trash.{table} AS SELECT * FROM main.{table} WHERE {column} = ?", (exp.id,)
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        db.execute("DETACH DATABASE trash")


def _delete_rows(store: Store, exp: Experiment) -> None:
    db = store.db
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, column in reversed(_TABLES):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (exp.id,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def move_to_trash(store: Store, name: str) -> TrashEntry:
    """Move experiment ``name`` (its rows and its folder) into the trash; the entry."""
    exp = store.require(name)
    entry = _entry_path(store.workspace, name)
    try:
        entry.mkdir(parents=True)
        _copy_rows(store, exp, entry / _ROWS_FILE)
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(entry, ignore_errors=True)
        raise StoreError(f"cannot write the trash entry {entry}: {exc}") from None
    folder = store.workspace / name
    moved = False
    try:
        if os.path.lexists(folder):
            os.rename(folder, entry / _IMAGES)
            moved = True
        _delete_rows(store, exp)
    except BaseException as exc:
        if moved:
            os.rename(entry / _IMAGES, folder)
        shutil.rmtree(entry, ignore_errors=True)
        if isinstance(exc, OSError):
            raise StoreError(f"cannot move {folder} into the trash: {exc.strerror or exc}") from None
        raise
    _drop_thumbnails(store.workspace, name)
    return _read_entry(entry)


def _drop_thumbnails(workspace: Path, name: str) -> None:
    """Remove the experiment's cached thumbnails (made by the gallery; made again when needed)."""
    shutil.rmtree(workspace / ".thumbs" / name, ignore_errors=True)


def _read_entry(path: Path) -> TrashEntry:
    rows_file = path / _ROWS_FILE
    db = sqlite3.connect(f"file:{rows_file}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT name FROM experiments").fetchone()
        samples = int(db.execute("SELECT COUNT(*) FROM samples WHERE status = 'done'").fetchone()[0])
    finally:
        db.close()
    images = path / _IMAGES
    count = sum(1 for p in images.iterdir() if p.suffix == ".png") if images.is_dir() else 0
    return TrashEntry(path, row[0] if row else "?", rows_file.stat().st_mtime, samples, count)


def trash_entries(workspace: Path) -> list[TrashEntry]:
    """What the trash holds, oldest first (folders without ``experiment.db`` are not ours
    and are left out)."""
    folder = Path(workspace) / TRASH_DIR
    if not folder.is_dir():
        return []
    entries = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and not path.is_symlink() and (path / _ROWS_FILE).is_file():
            try:
                entries.append(_read_entry(path))
            except sqlite3.Error:
                continue
    return sorted(entries, key=lambda e: (e.removed_at, e.label))


@dataclass(frozen=True)
class PurgeResult:
    """What ``purge`` did: the entries deleted, and the files it kept because the store did
    not write them (they stay in their entry's ``images/`` folder, which stays listed)."""

    deleted: tuple[TrashEntry, ...]
    kept: tuple[Path, ...]


def _recorded_files(entry: TrashEntry) -> set[str]:
    db = sqlite3.connect(f"file:{entry.path / _ROWS_FILE}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT file FROM samples WHERE file IS NOT NULL")}
    finally:
        db.close()


def _purge_entry(entry: TrashEntry) -> list[Path]:
    """Delete what the store wrote in one entry; the other files, kept where they are."""
    images = entry.path / _IMAGES
    kept: list[Path] = []
    if images.is_dir():
        ours = _recorded_files(entry) | {LOCK_FILE, SPEC_FILE}
        for path in sorted(images.iterdir()):
            if path.is_file() and not path.is_symlink() and (path.name in ours or is_temp(path.name)):
                path.unlink()
            else:
                kept.append(path)
        if not kept:
            images.rmdir()
    if not kept:
        shutil.rmtree(entry.path)
    return kept


def purge(workspace: Path, entries: list[TrashEntry] | None = None) -> PurgeResult:
    """Delete trash entries for good (every one when ``entries`` is None): the images,
    rows and files the store wrote. A file it did not write (one the user put in the
    experiment's folder) is never deleted: it stays in the entry, which stays listed."""
    deleted: list[TrashEntry] = []
    kept: list[Path] = []
    for entry in trash_entries(workspace) if entries is None else entries:
        try:
            left = _purge_entry(entry)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot delete {entry.path}: {getattr(exc, 'strerror', None) or exc}") from None
        if left:
            kept.extend(left)
        else:
            deleted.append(entry)
    trash = Path(workspace) / TRASH_DIR
    if trash.is_dir() and not any(trash.iterdir()):
        trash.rmdir()
    return PurgeResult(tuple(deleted), tuple(kept))


def find_entry(workspace: Path, which: str) -> TrashEntry:
    """The trash entry called ``which`` (its folder name), or the newest entry of the
    experiment named ``which``."""
    entries = trash_entries(workspace)
    exact = [e for e in entries if e.label == which]
    named = [e for e in entries if e.name == which]
    if exact or named:
        return (exact or named)[-1]
    known = ", ".join(sorted({e.name for e in entries})) or "the trash is empty"
    raise UsageError(f"nothing called {which!r} in the trash of {workspace} ({known})")


def restore(store: Store, entry: TrashEntry, name: str | None = None) -> Experiment:
    """Bring a trash entry back as experiment ``name`` (default: its own name)."""
    name = check_name(name or entry.name)
    if store.get(name) is not None or os.path.lexists(store.workspace / name):
        raise UsageError(
            f"{name!r} is taken in {store.workspace}: restore under another name (--as NEW_NAME)"
        )
    db = store.db
    db.execute("ATTACH DATABASE ? AS trash", (str(entry.path / _ROWS_FILE),))
    try:
        _insert_rows(store, name)
    finally:
        db.execute("DETACH DATABASE trash")
    images = entry.path / _IMAGES
    if images.is_dir():
        try:
            os.rename(images, store.workspace / name)
        except OSError as exc:
            _delete_rows(store, store.require(name))
            raise StoreError(f"cannot move {images} back: {exc.strerror or exc}") from None
    shutil.rmtree(entry.path, ignore_errors=True)
    return store.require(name)


def _shared_columns(db: sqlite3.Connection, table: str, leave_out: tuple[str, ...]) -> str:
    """The columns ``table`` has both in the store and in the attached entry (an entry
    written before a migration lacks the columns it added: they take their defaults)."""
    main = [r[1] for r in db.execute(f"PRAGMA main.table_info({table})")]
    trash = {r[1] for r in db.execute(f"PRAGMA trash.table_info({table})")}
    return ", ".join(c for c in main if c in trash and c not in leave_out)


def _insert_rows(store: Store, name: str) -> int:
    """Copy the attached entry's rows into the store under ``name`` and a new id."""
    db = store.db
    db.execute("BEGIN IMMEDIATE")
    try:
        cols = _shared_columns(db, "experiments", ("id", "name"))
        cur = db.execute(
            f"INSERT INTO main.experiments (name, {cols}) SELECT ?, {cols} FROM trash.experiments", (name,)
        )
        new_id = int(cur.lastrowid or 0)
        for table, _column in _TABLES[1:]:
            rest = _shared_columns(db, table, ("experiment_id",))
            if not rest:  # an entry written before the table existed
                continue
            db.execute(
                f"INSERT INTO main.{table} (experiment_id, {rest}) SELECT ?, {rest} FROM trash.{table}",
                (new_id,),
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return new_id
