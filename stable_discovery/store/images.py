"""What in an experiment's folder belongs to the store, and what does not.

The store owns only what it wrote, and can tell it apart by name and by record:

* images are named ``NNNNN.png`` (:func:`image_name`) and each carries its record as a
  JSON text chunk (key :data:`RECORD_KEY`: experiment, index, prompt, trace, …);
* a file being written has a temporary name of the store's own, ``.NNNNN.png.sdp-tmp``
  (:func:`temp_name`), and is renamed into place only once its row is marked done, so
  a file under an image's name without a done row was not put there by this store;
* ``.lock`` is the run's lock and ``.sdp-experiment.json`` the experiment's spec (what
  ``sdp repair`` rebuilds an experiment from when the database is lost).

Everything else in the folder is the user's: it is never deleted, moved or overwritten.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_KEY",
    "SPEC_FILE",
    "LOCK_FILE",
    "TEMP_SUFFIX",
    "IMAGE_RE",
    "FolderScan",
    "image_name",
    "image_index",
    "temp_name",
    "is_temp",
    "read_record",
    "is_ours",
    "scan_folder",
    "images_of_lost_experiments",
    "rename_in_spec_file",
]

#: Key of the project's own PNG text chunk (experiment, index, trace, settings, …).
RECORD_KEY = "stable-discovery"
#: The experiment's spec, beside its images (JSON).
SPEC_FILE = ".sdp-experiment.json"
#: The run's lock file.
LOCK_FILE = ".lock"
#: The suffix of the store's temporary files (``.00042.png.sdp-tmp``).
TEMP_SUFFIX = ".sdp-tmp"
#: An image's file name: the sample index, at least 5 digits.
IMAGE_RE = re.compile(r"^([0-9]{5,})\.png\Z")
_TEMP_RE = re.compile(r"^\.(?:[0-9]{5,}\.png|" + re.escape(SPEC_FILE) + ")" + re.escape(TEMP_SUFFIX) + r"\Z")


def image_name(index: int, count: int) -> str:
    """The file name of sample ``index`` of ``count`` (at least 5 digits)."""
    return f"{index:0{max(5, len(str(max(count - 1, 0))))}d}.png"


def image_index(name: str) -> int | None:
    """The sample index an image name stands for, or None for any other name."""
    m = IMAGE_RE.match(name)
    return int(m.group(1)) if m else None


def temp_name(name: str) -> str:
    """The temporary name ``name`` is written under before it is renamed into place."""
    return f".{name}{TEMP_SUFFIX}"


def is_temp(name: str) -> bool:
    """Whether ``name`` is one of the store's temporary names."""
    return _TEMP_RE.match(name) is not None


def read_record(path: Path | str) -> dict[str, Any] | None:
    """The store's JSON record of a PNG file, read without decoding its pixels; None when
    the file is not a readable PNG or carries no record."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            raw = im.info.get(RECORD_KEY)
            if raw is None and getattr(im, "format", None) == "PNG":
                im.load()  # a text chunk after the pixels (not how the store writes them)
                raw = (getattr(im, "text", None) or {}).get(RECORD_KEY)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    if not isinstance(raw, str):
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def is_ours(path: Path | str, experiment: str, index: int) -> bool:
    """Whether the image at ``path`` carries the store's record of sample ``index`` of
    ``experiment`` (what a run killed between writing it and recording it leaves)."""
    record = read_record(path)
    return record is not None and record.get("experiment") == experiment and record.get("index") == index


@dataclass(frozen=True)
class FolderScan:
    """What an experiment's folder holds, against the store's done rows.

    Attributes:
        temps: the store's temporary files (a run was killed while writing them).
        missing: file names of done rows that are not in the folder.
        unrecorded: image names (``NNNNN.png``) without a done row.
        others: every other file (the user's, a sink's): never touched.
    """

    temps: tuple[str, ...]
    missing: tuple[str, ...]
    unrecorded: tuple[str, ...]
    others: tuple[str, ...]


def scan_folder(folder: Path, done_files: Iterable[str]) -> FolderScan:
    """Compare ``folder`` with the file names of the experiment's done rows (one
    directory listing; nothing is opened)."""
    done = set(done_files)
    temps: list[str] = []
    unrecorded: list[str] = []
    others: list[str] = []
    present: set[str] = set()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        entries = []
    for entry in entries:
        name = entry.name
        present.add(name)
        if name in done:
            continue
        if is_temp(name):
            temps.append(name)
        elif IMAGE_RE.match(name):
            unrecorded.append(name)
        elif name not in (LOCK_FILE, SPEC_FILE):
            others.append(name)
    missing = sorted(done - present)
    return FolderScan(tuple(sorted(temps)), tuple(missing), tuple(sorted(unrecorded)), tuple(sorted(others)))


def rename_in_spec_file(folder: Path, name: str) -> None:
    """Give the spec file in ``folder`` (if any) the experiment's new ``name`` (``sdp mv``),
    written under the store's temporary name and renamed into place."""
    path = folder / SPEC_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(data, dict) or data.get("name") == name:
        return
    data["name"] = name
    tmp = folder / temp_name(SPEC_FILE)
    try:
        tmp.write_text(
            json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # the spec file keeps the old name; sdp repair copes with that


def images_of_lost_experiments(workspace: Path, known: Iterable[str] = ()) -> dict[str, int]:
    """Folders of ``workspace`` that hold images the store made (they carry its record;
    a renamed experiment's records still name the old name) but are not among the
    ``known`` experiments: folder name → image count.

    One image per folder is opened; the rest are only counted.
    """
    skip = set(known)
    found: dict[str, int] = {}
    try:
        folders = sorted(
            (e for e in os.scandir(workspace) if e.is_dir() and not e.name.startswith(".")),
            key=lambda e: e.name,
        )
    except OSError:
        return found
    for folder in (e for e in folders if e.name not in skip):
        try:
            names = sorted(e.name for e in os.scandir(folder.path) if IMAGE_RE.match(e.name))
        except OSError:
            continue
        if names and read_record(os.path.join(folder.path, names[0])) is not None:
            found[folder.name] = len(names)
    return found
