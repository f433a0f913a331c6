"""``sdp repair``: make the store and the image folders agree again, from what each
PNG carries (its full record) and the spec kept beside the images.

* A database that is missing, empty or damaged is rebuilt: a damaged one is first
  renamed aside (``discovery.db.damaged-…``, never deleted) and the marks that can still
  be read from it are put back.
* An experiment folder the store does not know is added back from its spec file
  (``.sdp-experiment.json``; then the run can be resumed as before) or, for folders made
  before that file existed, from its images alone.
* An image the store has no row for but whose record says it is that sample of that
  experiment (a run killed between writing and recording it) gets its row.
* Images of done samples that are missing are listed, and made again with ``regen``.

Files that are not the store's are never touched.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_discovery.backends.base import Backend, Batch, GenerationKey
from stable_discovery.language.loras import default_lora_dirs
from stable_discovery.run.files import ExperimentLock, ImageWriter, read_spec_file, sweep, write_spec_file
from stable_discovery.run.recording import LoraHashes
from stable_discovery.store.database import DB_FILE, Experiment, ExperimentSpec, Store, sample_from_record
from stable_discovery.store.faults import StoreFault
from stable_discovery.store.images import IMAGE_RE, SPEC_FILE, image_index, image_name, read_record
from stable_discovery.store.salvage import damage, restore_marks, salvage_marks, set_aside

__all__ = ["Repaired", "RepairReport", "repair", "UNKNOWN_TEMPLATE"]

#: The template text of an experiment rebuilt from images alone.
UNKNOWN_TEMPLATE = (
    "# sdp repair rebuilt this experiment from its images; its template was not kept with them\n"
)

BackendLookup = Callable[[str], Callable[..., Backend]]


@dataclass(frozen=True)
class Repaired:
    """What was done to one experiment.

    Attributes:
        name: the experiment.
        rebuilt: ``None`` (the store knew it), ``"spec"`` (added back from its spec file)
            or ``"images"`` (added back from its images alone: its template is unknown).
        adopted: images that were given their missing rows.
        missing: file names of done samples whose images are missing (after ``regen``:
            those that could not be made).
        regenerated: images made again.
        skipped: images whose record does not say they belong here (left alone).
    """

    name: str
    rebuilt: str | None
    adopted: int
    missing: tuple[str, ...]
    regenerated: int
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class RepairReport:
    """What ``sdp repair`` did: the store's state before (``None``: sound, else
    ``"missing"``, ``"empty"`` or ``"damaged (…)"``), where a damaged database was set
    aside, how many marks were put back, and each experiment."""

    workspace: Path
    store_state: str | None
    set_aside: Path | None
    marks_restored: int
    experiments: list[Repaired]


def repair(workspace: Path, names: Sequence[str] = (), regen: BackendLookup | None = None) -> RepairReport:
    """Repair ``workspace`` (only the experiments ``names``, when given)."""
    workspace = Path(workspace)
    if not workspace.is_dir():
        from stable_discovery.errors import UsageError

        raise UsageError(f"there is no folder {workspace}")
    store, state, aside = _open(workspace)
    with store:
        marks = salvage_marks(aside) if aside is not None else []
        results = []
        for name in _experiment_names(store, workspace, names):
            folder = store.experiment_dir(name)
            if not folder.is_dir() and store.get(name) is None:
                continue
            folder.mkdir(exist_ok=True)
            with ExperimentLock(folder, name):
                done = _repair_experiment(store, folder, name, regen)
            if done is not None:
                results.append(done)
        restored = restore_marks(store, marks) if marks else 0
    return RepairReport(workspace, state, aside, restored, results)


def _open(workspace: Path) -> tuple[Store, str | None, Path | None]:
    """The store, rebuilt when missing, empty or damaged: (store, its state before,
    where a damaged database was set aside)."""
    db = workspace / DB_FILE
    state = "missing" if not db.exists() else "empty" if db.stat().st_size == 0 else None
    try:
        store = Store(workspace, mode="create", guard=False)
    except StoreFault as exc:
        if exc.kind not in ("damaged", "not-a-store"):
            raise
        problem = ["not a readable SQLite database" if exc.kind == "not-a-store" else "SQLite cannot read it"]
    else:
        problem = damage(store)  # first: reading a damaged file may fail anywhere
        if not problem:
            if state is None and not store.experiment_names():
                state = "empty"
            return store, state, None
        store.close()
    aside = set_aside(workspace)
    return Store(workspace, mode="create", guard=False), _damaged(problem), aside


def _damaged(problem: list[str]) -> str:
    """A one-line account of what SQLite found wrong (its check lists every page)."""
    first = " ".join(problem[0].split())
    first = first if len(first) <= 100 else first[:99] + "…"
    if len(problem) == 1:
        return f"damaged ({first})"
    return f"damaged (SQLite's check found {len(problem)} problems, the first: {first})"


def _experiment_names(store: Store, workspace: Path, names: Sequence[str]) -> list[str]:
    if names:
        return list(names)
    folders = {
        e.name
        for e in os.scandir(workspace)
        if e.is_dir() and not e.name.startswith(".") and _looks_like_experiment(Path(e.path))
    }
    return sorted(folders | store.experiment_names())


def _looks_like_experiment(folder: Path) -> bool:
    if (folder / SPEC_FILE).is_file():
        return True
    return any(IMAGE_RE.match(e.name) for e in os.scandir(folder))


def _repair_experiment(store: Store, folder: Path, name: str, regen: BackendLookup | None) -> Repaired | None:
    exp = store.get(name)
    rebuilt = None
    if exp is None:
        exp, rebuilt = _rebuild(store, folder, name)
        if exp is None:
            return None
    spec = store.spec_of(exp)
    if rebuilt != "images" and read_spec_file(folder) != (spec, exp.created_at):
        write_spec_file(folder, spec, exp.created_at)
    scan = store.scan(exp)
    sweep(folder, scan)
    adopted, skipped = _adopt(store, exp, folder, scan.unrecorded, _names_made_under(folder, name))
    missing = list(scan.missing)
    regenerated = 0
    if missing and regen is not None:
        regenerated, missing = _regenerate(store, exp, folder, missing, regen)
    return Repaired(name, rebuilt, adopted, tuple(missing), regenerated, tuple(skipped))


def _rebuild(store: Store, folder: Path, name: str) -> tuple[Experiment | None, str | None]:
    """Add an experiment the store lost back from its folder: from its spec file, else
    from its images' records; (None, None) when the folder holds neither. The folder's
    name is the experiment's (``sdp mv`` renames the folder; the records keep the name
    the images were made under)."""
    kept = read_spec_file(folder)
    if kept is not None:
        spec, created_at = kept
        return store.import_experiment(dataclasses.replace(spec, name=name), created_at or None), "spec"
    records = [r for r in (read_record(folder / n) for n in _image_names(folder)) if r is not None]
    if not records:
        return None, None
    made_as = Counter(str(r.get("experiment")) for r in records).most_common(1)[0][0]
    ours = [r for r in records if r.get("experiment") in (name, made_as)]
    backends = Counter(str(r.get("backend", "unknown")) for r in ours)
    spec = ExperimentSpec(
        name=name,
        template_path=None,
        template_text=UNKNOWN_TEMPLATE,
        wildcards_hash="",
        sampler="unknown",
        seed=0,
        count=max(int(r.get("index", 0)) for r in ours) + 1,
        backend=backends.most_common(1)[0][0],
        overrides={},
    )
    return store.import_experiment(spec), "images"


def _names_made_under(folder: Path, name: str) -> set[str]:
    """The experiment names the folder's images may carry: its own, and the one its
    spec file or its first image was made under (before an ``sdp mv``)."""
    names = {name}
    kept = read_spec_file(folder)
    if kept is not None:
        names.add(kept[0].name)
    first = next(iter(_image_names(folder)), None)
    record = read_record(folder / first) if first is not None else None
    if record is not None and isinstance(record.get("experiment"), str):
        names.add(record["experiment"])
    return names


def _image_names(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if IMAGE_RE.match(e.name))


def _adopt(
    store: Store, exp: Experiment, folder: Path, names: Iterable[str], made_under: set[str]
) -> tuple[int, list[str]]:
    """Rows for the images whose records say they are that sample of ``exp`` (made
    under one of the names ``made_under``)."""
    adopted, skipped = 0, []
    chunk: list[tuple[Any, str, float | None, int | None]] = []
    for fname in names:
        index = image_index(fname)
        record = read_record(folder / fname)
        if (
            index is None
            or record is None
            or record.get("experiment") not in made_under
            or record.get("index") != index
            or fname != image_name(index, exp.count)
        ):
            skipped.append(fname)
            continue
        try:
            sample = sample_from_record(record)
        except (KeyError, TypeError, ValueError, AttributeError):
            skipped.append(fname)
            continue
        chunk.append((sample, fname, None, None))
        if len(chunk) >= 256:
            store.record_done(exp.id, chunk)
            adopted += len(chunk)
            chunk = []
    if chunk:
        store.record_done(exp.id, chunk)
        adopted += len(chunk)
    return adopted, skipped


def _regenerate(
    store: Store, exp: Experiment, folder: Path, missing: list[str], regen: BackendLookup
) -> tuple[int, list[str]]:
    """Make the missing images again with the experiment's backend: (how many were
    made, the names still missing)."""
    options: dict[str, Any] = {}
    if exp.backend == "diffusers":  # LoRAs as `sdp run` found them by default
        template = Path(exp.template_path) if exp.template_path else None
        options["lora_dirs"] = [str(d.expanduser().absolute()) for d in default_lora_dirs(template)]
    backend = regen(exp.backend)(**options)
    hashes = LoraHashes(options.get("lora_dirs", ()))
    writer = ImageWriter(folder, exp.name, exp.backend, exp.count)
    made, left = 0, []
    try:
        for fname in missing:
            index = image_index(fname)
            record = store.record(exp, index) if index is not None else None
            if record is None:
                left.append(fname)
                continue
            sample = sample_from_record(record)
            key = GenerationKey.of(sample)
            image = backend.generate(Batch(key, (sample,)))[0]
            lora_hashes = hashes(key.model, [n for n, _w in key.loras])
            writer.write(sample, image, backend.describe_model(key.model), lora_hashes, fname=record["file"])
            made += 1
    finally:
        backend.close()
    return made, left
