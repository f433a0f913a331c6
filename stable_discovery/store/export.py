"""Getting an experiment out of the store: the records of the samples a filter selects,
and writers for a folder of images, a zip, a CSV or a JSON Lines file.

Images are copied byte for byte, so their PNG chunks (the A1111 ``parameters`` text and
the project's JSON record) travel with them. A folder or a zip also gets
``metadata.jsonl``, one record per image with its ``file_name``: the layout of a Hugging
Face ``imagefolder`` data set. ``sdp export`` and the gallery's download both use this.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from stable_discovery.store.filters import Filters
from stable_discovery.store.gallery_queries import matching_indices

__all__ = [
    "ExportResult",
    "export_records",
    "record_columns",
    "csv_header",
    "csv_row",
    "write_folder",
    "write_zip",
    "write_csv",
    "write_jsonl",
    "METADATA_FILE",
]

METADATA_FILE = "metadata.jsonl"
_CHUNK = 500


class Writable(Protocol):
    """Where a zip can be written: a file, or an HTTP response (not seekable)."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class ExportResult:
    """What an export wrote: how many records, images, and the images it could not find."""

    records: int = 0
    images: int = 0
    missing: list[str] = field(default_factory=list)


def export_records(
    db: sqlite3.Connection, experiment_id: int, name: str, folder: Path, filters: Filters
) -> Iterator[dict[str, Any]]:
    """The full record of every sample matching ``filters``, in index order, as ``sdp show
    --json`` prints it: prompt, negative, settings, seed, trace, file, rating, and the
    image's ``path`` (in ``folder``, the experiment's image folder)."""
    indices = list(matching_indices(db, experiment_id, filters))
    for start in range(0, len(indices), _CHUNK):
        yield from _chunk(db, experiment_id, name, folder, indices[start : start + _CHUNK])


def _chunk(
    db: sqlite3.Connection, experiment_id: int, name: str, folder: Path, indices: list[int]
) -> Iterator[dict[str, Any]]:
    marks = ", ".join("?" * len(indices))
    args = (experiment_id, *indices)
    traces: dict[int, dict[str, dict[str, Any]]] = {}
    for idx, slot, choice, text in db.execute(
        f"SELECT idx, name, choice, text FROM choices WHERE experiment_id = ? AND idx IN ({marks}) "
        "ORDER BY idx, rowid",
        args,
    ):
        traces.setdefault(idx, {})[slot] = {"index": choice, "text": text}
    ratings = {
        idx: {"favourite": bool(fav), "stars": stars, "rejected": bool(rej)}
        for idx, fav, stars, rej in db.execute(
            "SELECT idx, favourite, stars, rejected FROM ratings "
            f"WHERE experiment_id = ? AND idx IN ({marks})",
            args,
        )
    }
    unrated = {"favourite": False, "stars": None, "rejected": False}
    for row in db.execute(
        "SELECT idx, prompt, negative, settings, seed, file, batch_size, seconds FROM samples "
        f"WHERE experiment_id = ? AND idx IN ({marks}) ORDER BY idx",
        args,
    ):
        idx = row[0]
        yield {
            "experiment": name,
            "index": idx,
            "prompt": row[1],
            "negative": row[2],
            "settings": json.loads(row[3]),
            "seed": row[4],
            "trace": traces.get(idx, {}),
            "file": row[5],
            "path": str(folder / row[5]) if row[5] else None,
            "batch_size": row[6],
            "seconds": row[7],
            "rating": dict(ratings.get(idx, unrated)),
        }


def record_columns(db: sqlite3.Connection, experiment_id: int) -> tuple[list[str], list[str]]:
    """The setting names and traced names of an experiment's samples, for CSV columns:
    settings sorted, traced names in the order of the first sample's trace."""
    settings = [
        row[0]
        for row in db.execute(
            "SELECT DISTINCT j.key FROM samples s, json_each(s.settings) j "
            "WHERE s.experiment_id = ? AND s.status = 'done' ORDER BY j.key",
            (experiment_id,),
        )
    ]
    names: dict[str, None] = {}
    first = db.execute(
        "SELECT MIN(idx) FROM samples WHERE experiment_id = ? AND status = 'done'", (experiment_id,)
    ).fetchone()[0]
    if first is not None:
        for (slot,) in db.execute(
            "SELECT name FROM choices WHERE experiment_id = ? AND idx = ? ORDER BY rowid",
            (experiment_id, first),
        ):
            names[slot] = None
    for (slot,) in db.execute(
        "SELECT DISTINCT name FROM choices WHERE experiment_id = ? ORDER BY name", (experiment_id,)
    ):
        names.setdefault(slot, None)
    return settings, list(names)


_BASE_COLUMNS = [
    "experiment",
    "index",
    "file",
    "path",
    "prompt",
    "negative",
    "seed",
    "favourite",
    "stars",
    "rejected",
]


def csv_header(settings: list[str], names: list[str]) -> list[str]:
    """The CSV columns: the record's fields, ``setting.NAME`` for each setting and
    ``trace.NAME`` (the text of the value taken; empty when absent) for each traced name."""
    return _BASE_COLUMNS + [f"setting.{s}" for s in settings] + [f"trace.{n}" for n in names]


def csv_row(record: dict[str, Any], settings: list[str], names: list[str]) -> list[Any]:
    """A record as a CSV row under :func:`csv_header`."""
    rating = record["rating"]
    cells: list[Any] = [
        record["experiment"],
        record["index"],
        record["file"],
        record["path"],
        record["prompt"],
        record["negative"],
        record["seed"],
        int(rating["favourite"]),
        "" if rating["stars"] is None else rating["stars"],
        int(rating["rejected"]),
    ]
    for key in settings:
        value = record["settings"].get(key, "")
        cells.append(json.dumps(value) if isinstance(value, (dict, list)) else value)
    for slot in names:
        chosen = record["trace"].get(slot)
        cells.append("" if chosen is None else chosen["text"])
    return cells


def write_csv(records: Iterable[dict[str, Any]], out: IO[str], settings: list[str], names: list[str]) -> int:
    """Write records as CSV (a header, then one row each); how many."""
    writer = csv.writer(out)
    writer.writerow(csv_header(settings, names))
    n = 0
    for record in records:
        writer.writerow(csv_row(record, settings, names))
        n += 1
    return n


def _jsonl(record: dict[str, Any], **extra: Any) -> str:
    return json.dumps({**record, **extra}, ensure_ascii=False) + "\n"


def write_jsonl(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """Write records as JSON Lines; how many."""
    n = 0
    for record in records:
        out.write(_jsonl(record))
        n += 1
    return n


def _image_source(record: dict[str, Any]) -> Path | None:
    """The record's image file when it is a regular file (a missing one: None)."""
    path = record.get("path")
    if not path or not os.path.isfile(path):
        return None
    return Path(path)


def write_folder(records: Iterable[dict[str, Any]], folder: Path, *, overwrite: bool = False) -> ExportResult:
    """Copy each record's image into ``folder`` (made when missing) with ``metadata.jsonl``.

    An existing file is replaced only when ``overwrite``; the caller checks the folder
    first, so that nothing is half written when it is refused.
    """
    result = ExportResult()
    folder.mkdir(parents=True, exist_ok=True)
    mode = "w" if overwrite else "x"
    with open(folder / METADATA_FILE, mode, encoding="utf-8") as meta:
        for record in records:
            result.records += 1
            source = _image_source(record)
            if source is None:
                result.missing.append(str(record.get("file")))
                continue
            with open(source, "rb") as src, open(folder / source.name, mode + "b") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            meta.write(_jsonl(record, file_name=source.name))
            result.images += 1
    return result


def write_zip(
    records: Iterable[dict[str, Any]], out: Writable, *, note_missing: bool = False
) -> ExportResult:
    """Write a zip of each record's image (stored as it is: PNGs are compressed already)
    and ``metadata.jsonl`` into ``out``, which need not be seekable (an HTTP response).
    With ``note_missing``, images missing from the workspace are listed in ``missing.txt``
    (a download has no other way to say so)."""
    result = ExportResult()
    meta = io.StringIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for record in records:
            result.records += 1
            source = _image_source(record)
            if source is None:
                result.missing.append(str(record.get("file")))
                continue
            archive.write(source, source.name)
            meta.write(_jsonl(record, file_name=source.name))
            result.images += 1
        archive.writestr(METADATA_FILE, meta.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
        if note_missing and result.missing:
            text = "These images of the selection are missing from the workspace:\n" + "\n".join(
                result.missing
            )
            archive.writestr("missing.txt", text + "\n")
    return result
