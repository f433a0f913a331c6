"""The run store: one workspace folder with ``discovery.db`` (SQLite, WAL) and one folder
of images per experiment. Plain SQLite: ``datasette discovery.db`` or any client reads it.

Schema changes are named migrations (:mod:`.migrations`) applied in order and recorded
in ``_migrations``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_discovery.errors import UsageError
from stable_discovery.sampling.sample import Chosen, Sample
from stable_discovery.store import lookups, runlog
from stable_discovery.store.faults import StoreError, StoreFault, fault
from stable_discovery.store.images import (
    FolderScan,
    images_of_lost_experiments,
    rename_in_spec_file,
    scan_folder,
)
from stable_discovery.store.migrations import check_schema, migrate, pending, rollback

__all__ = [
    "ENV_WORKSPACE",
    "DEFAULT_WORKSPACE",
    "DB_FILE",
    "MODES",
    "MAX_INT",
    "read_experiment_names",
    "require_store",
    "Store",
    "ExperimentSpec",
    "Experiment",
    "StoreError",
    "StoreFault",
    "workspace_path",
]

ENV_WORKSPACE = "SDP_WORKSPACE"
DEFAULT_WORKSPACE = "sdp-runs"
#: The database file in a workspace.
DB_FILE = "discovery.db"
#: The largest whole number the store holds (SQLite's 64-bit integers).
MAX_INT = 2**63 - 1
#: How a :class:`Store` opens its workspace: ``create`` makes the workspace and the
#: database when missing (``sdp run``); ``write`` needs them to exist (``sdp fav``);
#: ``read`` needs them to exist and never writes (``sdp runs``, ``stats``, the gallery).
MODES = ("create", "write", "read")


def workspace_path(option: Path | None) -> Path:
    """``--workspace``, else ``$SDP_WORKSPACE``, else ``./sdp-runs``."""
    if option is not None:
        return option
    env = os.environ.get(ENV_WORKSPACE)
    return Path(env) if env else Path(DEFAULT_WORKSPACE)


@dataclass(frozen=True)
class ExperimentSpec:
    """What makes an experiment itself: running it again must give the same samples."""

    name: str
    template_path: str | None
    template_text: str
    wildcards_hash: str
    sampler: str
    seed: int
    count: int
    backend: str
    overrides: dict[str, str]
    #: the template's traced variables (name, kind), in template order: recorded with
    #: the experiment, not part of what makes it itself (the template text is)
    variables: tuple[tuple[str, str], ...] = ()

    @property
    def template_hash(self) -> str:
        return hashlib.sha256(self.template_text.encode()).hexdigest()


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    template_path: str | None
    template_text: str
    template_hash: str
    wildcards_hash: str
    sampler: str
    seed: int
    count: int
    backend: str
    overrides: dict[str, str]
    created_at: float
    updated_at: float
    done: int = 0
    archived: bool = False


_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
#: Names no experiment may take, whatever their case: the store's own files, and
#: names Windows keeps for devices (a workspace may be copied there).
_RESERVED_STEMS = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}


def check_name(name: str) -> str:
    """``name`` when it is a safe experiment name (a folder of the workspace), else a
    :class:`UsageError` that says why."""
    if not name or len(name) > 100 or not set(name) <= _NAME_CHARS or name[0] in ".-":
        raise UsageError(
            f"bad experiment name {name!r}: use letters, digits, '.', '_' and '-' "
            "(not first), at most 100 characters"
        )
    lower = name.lower()
    if lower.startswith(DB_FILE):
        raise UsageError(
            f"bad experiment name {name!r}: the workspace's database is called {DB_FILE} "
            "(with -wal, -shm and -journal files beside it); choose another name"
        )
    if lower.split(".")[0] in _RESERVED_STEMS or name.endswith("."):
        raise UsageError(
            f"bad experiment name {name!r}: not a safe folder name on every system "
            "(Windows keeps CON, PRN, AUX, NUL, COM0-9 and LPT0-9, and drops a final '.'); "
            "choose another name"
        )
    return name


def require_store(workspace: Path) -> None:
    """A :class:`UsageError` unless ``workspace`` holds a database (nothing is created)."""
    db = Path(workspace) / DB_FILE
    if db.is_file():
        return
    if not Path(workspace).is_dir():
        where = f"no run store in {workspace} (there is no such folder)"
    else:
        where = f"no run store in {workspace} ({DB_FILE} is missing)"
    raise UsageError(
        f"{where}: give the folder `sdp run` wrote with --workspace DIR (or $SDP_WORKSPACE)"
        + (
            f"; if it held experiments, `sdp repair --workspace {workspace}` rebuilds the store "
            "from their images"
            if Path(workspace).is_dir() and images_of_lost_experiments(Path(workspace))
            else ""
        )
    )


def read_experiment_names(workspace: Path) -> set[str]:
    """The names of a workspace's experiments, read without opening a :class:`Store`:
    a read-only connection that neither creates, migrates nor writes anything.

    Raises :class:`sqlite3.Error` when there is no readable store.
    """
    db_path = Path(workspace) / DB_FILE
    if not db_path.is_file():
        raise sqlite3.OperationalError(f"unable to open database file: {db_path} is missing")
    db = _connect_ro(db_path)
    try:
        try:
            return {row[0] for row in db.execute("SELECT name FROM experiments")}
        except sqlite3.OperationalError as exc:
            if not _needs_immutable(exc):
                raise
        db.close()
        db = _connect_ro(db_path, immutable=True)
        return {row[0] for row in db.execute("SELECT name FROM experiments")}
    finally:
        db.close()


def _connect_ro(db_path: Path, immutable: bool = False) -> sqlite3.Connection:
    uri = db_path.absolute().as_uri() + ("?immutable=1" if immutable else "?mode=ro")
    db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


def _needs_immutable(exc: sqlite3.OperationalError) -> bool:
    """Whether a read-only connection failed because SQLite could not make the WAL's
    shared-memory file (a read-only or full disk): the file is then read as it is."""
    text = str(exc)
    return "unable to open" in text or "readonly" in text


def _not_writable(folder: Path) -> str | None:
    """Why ``folder`` cannot be written (a read-only file system, permissions), or None."""
    try:
        if os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1):
            return "is on a read-only file system"
    except (OSError, AttributeError):
        pass
    if not os.access(folder, os.W_OK):
        return "cannot be written (permissions)"
    return None


def _is_empty(db_path: Path) -> bool:
    try:
        return db_path.stat().st_size == 0
    except FileNotFoundError:
        return True


class Store:
    """The workspace's database and image folders.

    ``mode`` (one of :data:`MODES`) says whether the workspace may be created and
    whether the database may be written. Every mode refuses a database that a newer
    version of stable-discovery has changed; ``create`` also refuses to start a new,
    empty store in a workspace whose folders hold images of experiments the database
    does not know (it was lost or emptied: ``sdp repair`` rebuilds it).
    """

    def __init__(self, workspace: Path, *, mode: str = "create", guard: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.workspace = Path(workspace)
        self.db_path = self.workspace / DB_FILE
        self._recorded: dict[int, frozenset[str]] = {}
        self.mode = mode
        self.read_only = mode == "read"
        was_empty = _is_empty(self.db_path)
        if mode == "create":
            self._make_workspace()
            if guard and was_empty:
                self._refuse_if_lost("missing or empty")
        else:
            require_store(self.workspace)
        try:
            self.db = _connect_ro(self.db_path) if self.read_only else self._connect_rw()
            if self.read_only:
                self.db = self._check_read_only(self.db)
            elif mode == "create" and guard and not was_empty and not self.experiment_names():
                self._refuse_if_lost("empty (it knows no experiment)")
        except sqlite3.Error as exc:
            why = None if self.read_only else _not_writable(self.workspace)
            if why is not None:
                raise StoreFault(
                    f"cannot write to the store: {self.workspace} {why}. Reading commands (runs, show, "
                    "stats, refine, gallery) still work; to run or mark, use a writable --workspace",
                    "read-only",
                ) from None
            raise self.fault(exc, "opening the store") from None

    def fault(self, exc: BaseException, doing: str) -> StoreError:
        """A database or file error while ``doing`` something, as one line for a user."""
        found = fault(exc, self.db_path)
        if found is not None:
            return StoreFault(f"{doing}: {found}", found.kind)
        return StoreError(f"{doing}: {self.db_path}: {exc}")

    def _make_workspace(self) -> None:
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            found = fault(exc, self.workspace)
            raise StoreFault(
                f"cannot create the workspace {self.workspace}: {found or exc.strerror}"
            ) from None

    def _refuse_if_lost(self, state: str) -> None:
        """Refuse to start over in a workspace whose images the database has lost."""
        lost = images_of_lost_experiments(self.workspace)
        if not lost:
            return
        if getattr(self, "db", None) is not None:
            self.db.close()
        found = "; ".join(f"{name}: {n:,} images" for name, n in sorted(lost.items())[:5])
        more = f" and {len(lost) - 5} more folders" if len(lost) > 5 else ""
        raise StoreFault(
            f"{self.db_path} is {state}, but {self.workspace} holds images sdp made ({found}{more}). "
            f"Nothing was changed. Rebuild the store from the images' own metadata with "
            f"`sdp repair --workspace {self.workspace}`, or restore {DB_FILE} from a backup",
            "lost",
        )

    def _connect_rw(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            check_schema(db, self.db_path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    def _check_read_only(self, db: sqlite3.Connection) -> sqlite3.Connection:
        """Check the schema through a read-only connection; on a read-only or full disk,
        where SQLite cannot make the WAL's shared-memory file, read the file as it is
        (``immutable``). Migrations this version adds are applied when the file can be
        written (the gallery's indexes), and skipped otherwise."""
        try:
            check_schema(db, self.db_path, require=True)
        except sqlite3.OperationalError as exc:
            if not _needs_immutable(exc):
                db.close()
                raise
            db.close()
            db = _connect_ro(self.db_path, immutable=True)
            check_schema(db, self.db_path, require=True)
        if pending(db) and os.access(self.db_path, os.W_OK) and os.access(self.workspace, os.W_OK):
            try:
                self._connect_rw().close()
            except (sqlite3.Error, StoreError):
                pass  # a full disk, say: read what is there
        return db

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # experiments -----------------------------------------------------------------------
    def experiment_dir(self, name: str) -> Path:
        return self.workspace / check_name(name)

    def _experiment(self, row: sqlite3.Row, done: int = 0) -> Experiment:
        return Experiment(
            id=row["id"],
            name=row["name"],
            template_path=row["template_path"],
            template_text=row["template_text"],
            template_hash=row["template_hash"],
            wildcards_hash=row["wildcards_hash"],
            sampler=row["sampler"],
            seed=row["seed"],
            count=row["count"],
            backend=row["backend"],
            overrides=json.loads(row["overrides"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            done=done,
            archived=bool(row["archived"]),
        )

    def get(self, name: str) -> Experiment | None:
        row = self.db.execute("SELECT * FROM experiments WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return self._experiment(row, self.done_count(row["id"]))

    def require(self, name: str) -> Experiment:
        exp = self.get(name)
        if exp is None:
            names = [e.name for e in self.experiments()]
            import difflib

            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"no experiment named {name!r} in {self.workspace}{hint}")
        return exp

    def experiment_names(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT name FROM experiments")}

    def scan(self, exp: Experiment) -> FolderScan:
        """What the experiment's folder holds against its done rows: missing images, the
        store's temporary files, images without rows, and the user's files."""
        return scan_folder(self.experiment_dir(exp.name), self.done_files(exp.id))

    def experiments(self) -> list[Experiment]:
        counts = lookups.done_counts(self.db)
        rows = self.db.execute("SELECT * FROM experiments ORDER BY created_at, id").fetchall()
        return [self._experiment(r, counts.get(r["id"], 0)) for r in rows]

    def experiment_id(self, name: str) -> int | None:
        """The id of the experiment called ``name``, or None when there is none."""
        return lookups.experiment_id(self.db, name)

    def experiment_stamp(self, experiment_id: int) -> tuple[float, float]:
        """``(created_at, updated_at)`` of an experiment: it changes whenever samples are
        recorded, so it keys caches of what was computed from them."""
        stamp = lookups.experiment_stamp(self.db, experiment_id)
        if stamp is None:
            raise StoreError(f"no experiment with id {experiment_id} in {self.db_path}")
        return stamp

    # the record of each run -------------------------------------------------------------
    def start_run(self, experiment_id: int, settings: dict[str, Any]) -> int:
        """Record that a run of the experiment starts, with how it is run; its id."""
        return runlog.start_run(self.db, experiment_id, settings)

    def finish_run(self, run_id: int, **ended: Any) -> None:
        """Record how run ``run_id`` ended (:func:`.runlog.finish_run`)."""
        runlog.finish_run(self.db, run_id, **ended)

    def runs_of(self, exp: Experiment) -> list[dict[str, Any]]:
        """The experiment's runs, oldest first."""
        return runlog.runs_of(self.db, exp.id)

    def done_count(self, experiment_id: int) -> int:
        return lookups.done_count(self.db, experiment_id)

    def differences(self, exp: Experiment, spec: ExperimentSpec) -> list[str]:
        """What differs between a stored experiment and a new run's spec, in words."""
        diffs = []
        if exp.template_hash != spec.template_hash:
            diffs.append(_text_difference(exp.template_text, spec.template_text))
        if exp.wildcards_hash != spec.wildcards_hash:
            diffs.append("the wildcard files it uses changed")
        for field, label in (
            ("sampler", "sampler"),
            ("seed", "seed"),
            ("count", "count"),
            ("backend", "backend"),
        ):
            old, new = getattr(exp, field), getattr(spec, field)
            if old != new:
                diffs.append(f"{label} {old} → {new}")
        if exp.overrides != spec.overrides:
            diffs.append(f"overrides {exp.overrides or 'none'} → {spec.overrides or 'none'}")
        return diffs

    def open_experiment(self, spec: ExperimentSpec) -> Experiment:
        """Create the experiment, or return it when ``spec`` matches what is stored.

        A different spec under a used name is refused with what changed and a free name;
        a name under which nothing was made yet takes the new spec. The comparison and
        the change are one ``BEGIN IMMEDIATE`` transaction: no other process changes the
        experiment between them (the caller holds the run's lock as well).
        """
        check_name(spec.name)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            exp = self._open_experiment(spec)
            self.db.execute("COMMIT")
        except BaseException:
            rollback(self.db)
            raise
        return exp

    def _open_experiment(self, spec: ExperimentSpec) -> Experiment:
        existing = self.get(spec.name)
        if existing is None:
            self._write_spec(None, spec)
            return self._with_variables(self._reread(spec.name), spec)
        diffs = self.differences(existing, spec)
        if not diffs:
            return self._with_variables(existing, spec)
        if existing.done == 0 and not self._has_rows(existing.id):
            # nothing was made under the old spec (e.g. its model could not be loaded):
            # there is nothing to overwrite, so the name takes the new spec
            self._write_spec(existing.id, spec)
            self.db.execute("DELETE FROM variables WHERE experiment_id = ?", (existing.id,))
            return self._with_variables(self._reread(spec.name), spec)
        raise UsageError(
            f"experiment {spec.name!r} already exists and differs: {'; '.join(diffs)}. "
            f"Nothing was changed. Run it under a new name, e.g. --name {self.free_name(spec.name)}"
        )

    def _with_variables(self, exp: Experiment, spec: ExperimentSpec) -> Experiment:
        """Record the spec's traced variables, unless the experiment has them already (in
        the transaction of :meth:`open_experiment`).

        An experiment whose samples were made before variables were recorded traced its
        slots and sampled settings only: it gets those alone, and keeps recording only
        those (see :meth:`record_done`), so that its samples stay comparable.
        """
        self._recorded.pop(exp.id, None)
        if not spec.variables or lookups.variable_kinds(self.db, exp.id):
            return exp
        variables = spec.variables
        if self._has_rows(exp.id):
            variables = tuple((n, k) for n, k in variables if k in ("slot", "setting"))
        self.db.executemany(
            "INSERT INTO variables (experiment_id, name, kind, position) VALUES (?, ?, ?, ?)",
            [(exp.id, name, kind, k) for k, (name, kind) in enumerate(variables)],
        )
        return exp

    def recorded_names(self, experiment_id: int) -> frozenset[str] | None:
        """The variables whose values the experiment records, or None for all of them
        (no variables recorded with it)."""
        names = self._recorded.get(experiment_id)
        if names is None:
            names = self._recorded[experiment_id] = frozenset(lookups.variable_kinds(self.db, experiment_id))
        return names or None

    def _write_spec(
        self, experiment_id: int | None, spec: ExperimentSpec, created_at: float | None = None
    ) -> None:
        """Insert the experiment (``experiment_id`` None) or give it a new spec."""
        now = time.time()
        if experiment_id is None:
            self.db.execute(
                "INSERT INTO experiments (name, template_path, template_text, template_hash, "
                "wildcards_hash, sampler, seed, count, backend, overrides, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (spec.name, *_spec_columns(spec), created_at or now, now),
            )
        else:
            self.db.execute(
                "UPDATE experiments SET template_path = ?, template_text = ?, template_hash = ?, "
                "wildcards_hash = ?, sampler = ?, seed = ?, count = ?, backend = ?, overrides = ?, "
                "updated_at = ? WHERE id = ?",
                (*_spec_columns(spec), now, experiment_id),
            )

    def import_experiment(self, spec: ExperimentSpec, created_at: float | None = None) -> Experiment:
        """Add an experiment rebuilt from its folder (``sdp repair``); its name must be free."""
        check_name(spec.name)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self.get(spec.name) is not None:
                raise UsageError(f"experiment {spec.name!r} is already in {self.db_path}")
            self._write_spec(None, spec, created_at)
            self._with_variables(self._reread(spec.name), spec)
            self.db.execute("COMMIT")
        except BaseException:
            rollback(self.db)
            raise
        return self._reread(spec.name)

    def spec_of(self, exp: Experiment) -> ExperimentSpec:
        """The spec an experiment was stored with (and its traced variables)."""
        return ExperimentSpec(
            name=exp.name,
            template_path=exp.template_path,
            template_text=exp.template_text,
            wildcards_hash=exp.wildcards_hash,
            sampler=exp.sampler,
            seed=exp.seed,
            count=exp.count,
            backend=exp.backend,
            overrides=dict(exp.overrides),
            variables=tuple(lookups.variable_kinds(self.db, exp.id).items()),
        )

    def _reread(self, name: str) -> Experiment:
        exp = self.get(name)
        if exp is None:
            raise StoreError(f"experiment {name!r} vanished from {self.db_path} while it was being opened")
        return exp

    def _has_rows(self, experiment_id: int) -> bool:
        return (
            self.db.execute(
                "SELECT 1 FROM samples WHERE experiment_id = ? LIMIT 1", (experiment_id,)
            ).fetchone()
            is not None
        )

    def free_name(self, name: str) -> str:
        base = name
        stem, _, tail = name.rpartition("-")
        if stem and tail.isdigit():
            base = stem
        n = 2
        while self.get(f"{base}-{n}") is not None or (self.workspace / f"{base}-{n}").exists():
            n += 1
        return f"{base}-{n}"

    def set_archived(self, name: str, archived: bool) -> Experiment:
        """Archive an experiment (the gallery hides it unless asked) or bring it back."""
        exp = self.require(name)
        self.db.execute("UPDATE experiments SET archived = ? WHERE id = ?", (int(archived), exp.id))
        return self._reread(name)

    def rename(self, old: str, new: str) -> Experiment:
        """Give experiment ``old`` the name ``new``: its row and its image folder, at once.

        Refused when ``new`` is taken (by an experiment or by anything in the workspace).
        The caller holds the experiment's lock (no run may be writing to it). The row is
        changed in a transaction that commits only once the folder has been renamed, so
        that either both change or neither does.
        """
        exp = self.require(old)
        check_name(new)
        if self.get(new) is not None:
            raise UsageError(f"experiment {new!r} already exists; pick another name")
        target = self.workspace / new
        if os.path.lexists(target):
            raise UsageError(f"{target} already exists (not an experiment of this store); pick another name")
        folder = self.workspace / old
        self.db.execute("BEGIN IMMEDIATE")
        moved = False
        try:
            self.db.execute("UPDATE experiments SET name = ? WHERE id = ?", (new, exp.id))
            if os.path.lexists(folder):
                try:
                    os.rename(folder, target)
                except OSError as exc:
                    raise StoreError(f"cannot rename {folder} to {target}: {exc.strerror or exc}") from None
                moved = True
            self.db.execute("COMMIT")
        except BaseException:
            if moved:
                os.rename(target, folder)
            rollback(self.db)
            raise
        if moved:
            rename_in_spec_file(target, new)
        return self._reread(new)

    # samples ---------------------------------------------------------------------------
    def is_done(self, experiment_id: int, idx: int) -> bool:
        """Whether sample ``idx`` of the experiment has been generated."""
        return lookups.is_done(self.db, experiment_id, idx)

    def done_indices(self, experiment_id: int) -> set[int]:
        return {
            r[0]
            for r in self.db.execute(
                "SELECT idx FROM samples WHERE experiment_id = ? AND status = 'done'",
                (experiment_id,),
            )
        }

    def done_files(self, experiment_id: int) -> set[str]:
        """The file names of an experiment's done samples."""
        return {
            r[0]
            for r in self.db.execute(
                "SELECT file FROM samples WHERE experiment_id = ? AND status = 'done'", (experiment_id,)
            )
        }

    def record_done(
        self, experiment_id: int, items: Sequence[tuple[Sample, str, float | None, int | None]]
    ) -> None:
        """Mark samples done, each with its file, seconds and batch size (None: not
        known, for an image ``sdp repair`` adopted); one transaction.

        The trace entries recorded are those of the experiment's variables (a repeat such
        as ``__animal__#2`` with its variable): all of them, but for an experiment begun
        before every choice was traced, whose new samples record what its old ones did.
        """
        now = time.time()
        names = self.recorded_names(experiment_id)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO samples (experiment_id, idx, prompt, negative, settings, "
                "seed, status, file, batch_size, seconds, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'done', ?, ?, ?, ?)",
                [
                    (
                        experiment_id,
                        sample.index,
                        sample.prompt,
                        sample.negative,
                        json.dumps(dict(sample.settings), sort_keys=True),
                        sample.seed,
                        file,
                        batch_size,
                        seconds,
                        now,
                    )
                    for sample, file, seconds, batch_size in items
                ],
            )
            self.db.executemany(
                "DELETE FROM choices WHERE experiment_id = ? AND idx = ?",
                [(experiment_id, sample.index) for sample, _f, _s, _b in items],
            )
            self.db.executemany(
                "INSERT INTO choices (experiment_id, idx, name, choice, text) VALUES (?, ?, ?, ?, ?)",
                [
                    (experiment_id, sample.index, name, c.index, c.text)
                    for sample, _f, _s, _b in items
                    for name, c in sample.trace.items()
                    if names is None or lookups.base_name(name) in names
                ],
            )
            self.db.execute("UPDATE experiments SET updated_at = ? WHERE id = ?", (now, experiment_id))
            self.db.execute("COMMIT")
        except BaseException:
            rollback(self.db)
            raise

    # ratings ---------------------------------------------------------------------------
    def _require_done(self, experiment: Experiment, indices: Sequence[int]) -> None:
        for i in indices:
            if not 0 <= i <= MAX_INT:
                raise UsageError(f"{experiment.name!r} has samples 0 to {experiment.count - 1}, not {i}")
        if len(indices) <= 64:  # a few marks (the gallery, one at a time): look them up
            missing = [i for i in indices if not self.is_done(experiment.id, i)]
        else:
            done = self.done_indices(experiment.id)
            missing = [i for i in indices if i not in done]
        if missing:
            raise UsageError(
                f"{experiment.name!r} has no generated sample {missing[0]}"
                + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else "")
                + f"; it has {self.done_count(experiment.id)} of {experiment.count}"
            )

    def rate(
        self,
        experiment: Experiment,
        indices: Sequence[int],
        *,
        favourite: bool | None = None,
        stars: int | None = -1,
        rejected: bool | None = None,
    ) -> None:
        """Set favourite, stars (1-5, ``None`` clears, -1 leaves) and/or rejected."""
        if stars is not None and stars != -1 and not 1 <= stars <= 5:
            raise UsageError(f"stars go from 1 to 5, not {stars}")
        self._require_done(experiment, indices)
        now = time.time()
        sets, params = _rating_changes(now, favourite, stars, rejected)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for idx in indices:
                self.db.execute(
                    "INSERT OR IGNORE INTO ratings (experiment_id, idx, updated_at) VALUES (?, ?, ?)",
                    (experiment.id, idx, now),
                )
                self.db.execute(
                    f"UPDATE ratings SET {sets} WHERE experiment_id = ? AND idx = ?",
                    (*params, experiment.id, idx),
                )
            self.db.execute("COMMIT")
        except BaseException:
            rollback(self.db)
            raise

    def rating(self, experiment: Experiment, index: int) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT favourite, stars, rejected FROM ratings WHERE experiment_id = ? AND idx = ?",
            (experiment.id, index),
        ).fetchone()
        if row is None:
            return {"favourite": False, "stars": None, "rejected": False}
        return {"favourite": bool(row[0]), "stars": row[1], "rejected": bool(row[2])}

    def record(self, experiment: Experiment, index: int) -> dict[str, Any] | None:
        """A stored sample's full record, or None when it is not done."""
        if not 0 <= index <= MAX_INT:
            return None
        row = self.db.execute(
            "SELECT * FROM samples WHERE experiment_id = ? AND idx = ?", (experiment.id, index)
        ).fetchone()
        if row is None:
            return None
        trace = {
            r["name"]: {"index": r["choice"], "text": r["text"]}
            for r in self.db.execute(
                "SELECT name, choice, text FROM choices WHERE experiment_id = ? AND idx = ? ORDER BY rowid",
                (experiment.id, index),
            )
        }
        return {
            "experiment": experiment.name,
            "index": row["idx"],
            "prompt": row["prompt"],
            "negative": row["negative"],
            "settings": json.loads(row["settings"]),
            "seed": row["seed"],
            "trace": trace,
            "status": row["status"],
            "file": row["file"],
            "batch_size": row["batch_size"],
            "seconds": row["seconds"],
            "rating": self.rating(experiment, index),
        }

    def records(self, experiment: Experiment) -> Iterator[dict[str, Any]]:
        for (idx,) in self.db.execute(
            "SELECT idx FROM samples WHERE experiment_id = ? ORDER BY idx", (experiment.id,)
        ).fetchall():
            rec = self.record(experiment, idx)
            if rec is not None:
                yield rec


def _rating_changes(
    now: float, favourite: bool | None, stars: int | None, rejected: bool | None
) -> tuple[str, list[Any]]:
    """The ``SET`` list of a rating change and its parameters (``stars == -1``: untouched)."""
    sets: list[str] = ["updated_at = ?"]
    params: list[Any] = [now]
    if favourite is not None:
        sets.append("favourite = ?")
        params.append(int(favourite))
    if stars != -1:
        sets.append("stars = ?")
        params.append(stars)
    if rejected is not None:
        sets.append("rejected = ?")
        params.append(int(rejected))
    return ", ".join(sets), params


def _spec_columns(spec: ExperimentSpec) -> tuple[Any, ...]:
    """The experiment columns a spec sets, from ``template_path`` to ``overrides``."""
    return (
        spec.template_path,
        spec.template_text,
        spec.template_hash,
        spec.wildcards_hash,
        spec.sampler,
        spec.seed,
        spec.count,
        spec.backend,
        json.dumps(spec.overrides, sort_keys=True),
    )


def _text_difference(old: str, new: str) -> str:
    old_lines, new_lines = old.splitlines(), new.splitlines()
    for number, (a, b) in enumerate(zip(old_lines, new_lines, strict=False), start=1):
        if a != b:
            return f"the template changed at line {number} ({a.strip()!r} → {b.strip()!r})"
    if len(old_lines) != len(new_lines):
        return f"the template changed ({len(old_lines)} → {len(new_lines)} lines)"
    return "the template changed"


def sample_from_record(rec: dict[str, Any]) -> Sample:
    return Sample(
        index=rec["index"],
        prompt=rec["prompt"],
        negative=rec["negative"],
        settings=rec["settings"],
        seed=rec["seed"],
        trace={k: Chosen(v["index"], v["text"]) for k, v in rec["trace"].items()},
    )
