"""An experiment's folder: its lock, the sweep of what a killed run left, and images
written atomically with their metadata.

The store owns only what it wrote (:mod:`stable_discovery.store.images` says how it
tells): an image is encoded in memory and written under the store's temporary name
(:meth:`ImageWriter.stage`); its row is marked done; then it is renamed into place
(:meth:`ImageWriter.publish`). A killed run leaves temporary files, which the next
start sweeps, and at worst done rows whose files are missing, which it makes again;
never a file under an image's name that the store has no row for.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_discovery.errors import UsageError
from stable_discovery.run.pngmeta import a1111_parameters, png_info
from stable_discovery.sampling.sample import Sample
from stable_discovery.store.database import ExperimentSpec, StoreError
from stable_discovery.store.faults import os_fault
from stable_discovery.store.images import (
    LOCK_FILE,
    SPEC_FILE,
    FolderScan,
    image_index,
    image_name,
    is_ours,
    read_record,
    temp_name,
)

__all__ = [
    "EncodedImage",
    "ExperimentLock",
    "ImageWriter",
    "PngSpec",
    "image_name",
    "image_record",
    "lock_holders",
    "sweep",
    "check_unrecorded",
    "check_new_folder",
    "write_atomically",
    "write_spec_file",
    "read_spec_file",
]


class ExperimentLock:
    """An exclusive lock on an experiment folder, released when the process ends (or
    by :meth:`release`, or at the end of a ``with`` block)."""

    def __init__(self, folder: Path, name: str) -> None:
        import fcntl

        self.path = folder / LOCK_FILE
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise os_fault(exc, f"cannot lock experiment {name!r}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise StoreError(
                f"experiment {name!r} is being run by another process (pid {other}); "
                "wait for it to finish, or stop it first"
            ) from None
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass  # the pid is a courtesy to the next process; the lock is what counts

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ExperimentLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holders(folders: list[Path]) -> dict[Path, int]:
    """The experiment folders of ``folders`` whose lock a run holds, with that run's
    process id. The locks are never taken, so that a run starting meanwhile is not
    refused.

    On Linux the kernel's list of file locks (``/proc/locks``, read once) says exactly
    who holds each lock file; elsewhere the process id the run wrote into it must still
    be alive.
    """
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            table: str | None = locks.read()
    except OSError:
        table = None
    held = {}
    by_device = {}
    for line in (table or "").splitlines():
        fields = line.split()
        if "FLOCK" in fields and "->" not in fields and len(fields) >= 6:
            by_device[fields[5]] = fields[4]
    for folder in folders:
        path = folder / ".lock"
        try:
            st = os.stat(path)
            text = path.read_text(errors="replace").strip() if table is None else ""
        except OSError:
            continue
        if table is not None:
            pid = by_device.get(f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}")
            if pid is not None and pid.isdigit():
                held[folder] = int(pid)
        elif text.isdigit() and _alive(int(text)):
            held[folder] = int(text)
    return held


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def sweep(folder: Path, scan: FolderScan) -> int:
    """Remove the store's temporary files that a killed run left (nothing else)."""
    removed = 0
    for name in scan.temps:
        try:
            (folder / name).unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise os_fault(exc, f"cannot remove {folder / name}, left by a killed run") from None
    return removed


def check_unrecorded(folder: Path, experiment: str, count: int, scan: FolderScan) -> None:
    """Refuse to run when a file the run would write already exists and is not the
    store's: an image name without a done row whose PNG does not carry this
    experiment's record for that index (an earlier version of sdp renamed images into
    place before their rows were committed: those carry the record and are replaced)."""
    foreign = []
    for name in scan.unrecorded:
        index = image_index(name)
        if index is None or index >= count or name != image_name(index, count):
            continue  # a name this experiment never writes: left alone
        if not is_ours(folder / name, experiment, index):
            foreign.append(name)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UsageError(
            f"{folder} holds {shown}, which this run would write but the store did not make. "
            "Nothing was changed: move those files elsewhere, or run under another --name"
        )


def check_new_folder(folder: Path, experiment: str, scan: FolderScan) -> None:
    """A new experiment starts in an empty folder (or one holding only the store's own
    files): anything else is the user's, or images of an experiment the database lost."""
    files = list(scan.unrecorded) + list(scan.others)
    if not files:
        return
    if any(read_record(folder / n) is not None for n in scan.unrecorded[:20]):
        workspace = folder.parent
        raise StoreError(
            f"{folder} holds {len(scan.unrecorded):,} images sdp made, which the store has no record of "
            f"(was {workspace / 'discovery.db'} replaced?). Nothing "
            f"was changed: rebuild the experiment from its images with `sdp repair --workspace "
            f"{workspace}`, or run under another --name"
        )
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    raise UsageError(
        f"{folder} already exists and holds files sdp did not write ({shown}). Nothing was "
        "changed: run under another --name (or --workspace), or move those files elsewhere"
    )


def write_atomically(folder: Path, fname: str, data: bytes) -> None:
    """Write ``data`` under the store's temporary name with one system call, then rename."""
    stage_bytes(folder, fname, data)
    publish(folder, [fname])


def stage_bytes(folder: Path | str, fname: str, data: bytes | memoryview) -> None:
    """Write ``data`` under ``fname``'s temporary name (see :func:`publish`)."""
    tmp = os.path.join(folder, temp_name(fname))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise os_fault(exc, f"cannot write {os.path.join(folder, fname)}") from None


def publish(folder: Path | str, fnames: Iterable[str]) -> None:
    """Rename staged files into place."""
    for fname in fnames:
        final = os.path.join(folder, fname)
        try:
            os.replace(os.path.join(folder, temp_name(fname)), final)
        except OSError as exc:
            raise os_fault(exc, f"cannot move {final} into place") from None


def discard(folder: Path | str, fnames: Iterable[str]) -> None:
    """Remove staged files whose rows could not be recorded."""
    for fname in fnames:
        try:
            os.unlink(os.path.join(folder, temp_name(fname)))
        except OSError:
            pass


def write_spec_file(folder: Path, spec: ExperimentSpec, created_at: float) -> None:
    """Write the experiment's spec beside its images (``sdp repair`` reads it)."""
    data = {
        "format": 1,
        "name": spec.name,
        "template_path": spec.template_path,
        "template_text": spec.template_text,
        "wildcards_hash": spec.wildcards_hash,
        "sampler": spec.sampler,
        "seed": spec.seed,
        "count": spec.count,
        "backend": spec.backend,
        "overrides": spec.overrides,
        "created_at": created_at,
        "variables": [list(v) for v in spec.variables],
    }
    text = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    write_atomically(folder, SPEC_FILE, text.encode("utf-8"))


def read_spec_file(folder: Path) -> tuple[ExperimentSpec, float] | None:
    """The spec :func:`write_spec_file` wrote, with the experiment's creation time; None
    when there is none or it cannot be read."""
    try:
        data = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
        spec = ExperimentSpec(
            name=str(data["name"]),
            template_path=data["template_path"],
            template_text=str(data["template_text"]),
            wildcards_hash=str(data["wildcards_hash"]),
            sampler=str(data["sampler"]),
            seed=int(data["seed"]),
            count=int(data["count"]),
            backend=str(data["backend"]),
            overrides={str(k): str(v) for k, v in dict(data["overrides"]).items()},
            variables=tuple((str(n), str(k)) for n, k in data.get("variables", ())),
        )
        return spec, float(data.get("created_at") or 0.0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def image_record(experiment: str, sample: Sample, backend: str) -> dict[str, Any]:
    """The project's JSON record of an image (its PNG chunk, the sinks' and hooks' view)."""
    return {
        "experiment": experiment,
        "index": sample.index,
        "prompt": sample.prompt,
        "negative": sample.negative,
        "settings": dict(sample.settings),
        "seed": sample.seed,
        "trace": {k: {"index": c.index, "text": c.text} for k, c in sample.trace.items()},
        "backend": backend,
    }


@dataclass(frozen=True)
class EncodedImage:
    """An image already encoded as its PNG file, both metadata chunks in it, where it was
    generated (a Ray worker): the driver only writes ``data``. ``record`` is the image's
    record (:func:`image_record`), ``size`` its (width, height)."""

    data: bytes
    record: dict[str, Any]
    size: tuple[int, int]

    def image(self) -> Any:
        """The image, opened lazily from the bytes (pixels are decoded on first use)."""
        from PIL import Image

        return Image.open(io.BytesIO(self.data))


@dataclass(frozen=True)
class PngSpec:
    """How an experiment's images become PNG files: its name and backend go into each
    image's record. Small and picklable: Ray workers get it to encode where they
    generate."""

    experiment: str
    backend: str

    def encode(
        self, sample: Sample, image: Any, model_name: str, lora_hashes: Mapping[str, str] | None = None
    ) -> EncodedImage:
        """The PNG file of ``sample``'s image: the A1111 parameters (``lora_hashes``:
        name → A1111 short hash) and the project's record, compression level 1."""
        record = image_record(self.experiment, sample, self.backend)
        params = a1111_parameters(
            sample.prompt, sample.negative, sample.settings, sample.seed, model_name, lora_hashes
        )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=png_info(params, record), compress_level=1)
        return EncodedImage(buffer.getvalue(), record, (int(image.size[0]), int(image.size[1])))


@dataclass(frozen=True)
class ImageWriter:
    """Writes an experiment's images into its folder, each with both metadata chunks:
    :meth:`stage` under the temporary name, :meth:`publish` into place once the rows
    are recorded (:meth:`write` does both, for an image whose row is already done).
    Staging is safe from several threads at once (each image has its own file)."""

    folder: Path
    experiment: str
    backend: str
    count: int

    @property
    def png(self) -> PngSpec:
        return PngSpec(self.experiment, self.backend)

    def stage(
        self,
        sample: Sample,
        image: Any,
        model_name: str,
        lora_hashes: Mapping[str, str] | None = None,
        *,
        fname: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Encode the image of ``sample`` (unless it is an :class:`EncodedImage`) and
        write it under the temporary name of ``fname`` (default: its image name): (its
        file name, its record). ``lora_hashes`` (name → A1111 short hash) go into its
        parameters."""
        fname = fname or image_name(sample.index, self.count)
        encoded = (
            image
            if isinstance(image, EncodedImage)
            else self.png.encode(sample, image, model_name, lora_hashes)
        )
        stage_bytes(self.folder, fname, encoded.data)
        return fname, encoded.record

    def publish(self, fnames: Iterable[str]) -> None:
        """Rename staged images into place."""
        publish(self.folder, fnames)

    def discard(self, fnames: Iterable[str]) -> None:
        """Remove staged images (their rows could not be recorded)."""
        discard(self.folder, fnames)

    def write(
        self,
        sample: Sample,
        image: Any,
        model_name: str,
        lora_hashes: Mapping[str, str] | None = None,
        *,
        fname: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Stage and publish at once (an image whose done row already names it)."""
        fname, record = self.stage(sample, image, model_name, lora_hashes, fname=fname)
        self.publish([fname])
        return fname, record
