"""An experiment's folder: its lock, the sweep of what a killed run left, and images
written atomically (encoded in memory, written under a temporary name, renamed) with
their metadata."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_discovery.run.pngmeta import a1111_parameters, png_info
from stable_discovery.sampling.sample import Sample
from stable_discovery.store.database import StoreError

__all__ = [
    "ExperimentLock",
    "ImageWriter",
    "image_name",
    "image_record",
    "lock_holders",
    "sweep",
    "write_atomically",
]


class ExperimentLock:
    """An exclusive lock on an experiment folder, released when the process ends (or
    by :meth:`release`, or at the end of a ``with`` block)."""

    def __init__(self, folder: Path, name: str) -> None:
        import fcntl

        self.path = folder / ".lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise StoreError(
                f"experiment {name!r} is being run by another process (pid {other}); "
                "wait for it to finish, or stop it first"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

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


def sweep(folder: Path, done_files: set[str]) -> int:
    """Remove what a killed run left: temporary files and images without a done row."""
    removed = 0
    for path in folder.iterdir():
        name = path.name
        if name.endswith(".tmp") or (name.endswith(".png") and name not in done_files):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def image_name(index: int, count: int) -> str:
    """The file name of sample ``index`` of ``count`` (at least 5 digits)."""
    return f"{index:0{max(5, len(str(max(count - 1, 0))))}d}.png"


def write_atomically(folder: Path, fname: str, image: Any, pnginfo: Any) -> None:
    """Encode in memory, write under a temporary name with one system call, rename."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo, compress_level=1)
    tmp = os.path.join(folder, fname + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = buffer.getbuffer()
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(folder, fname))


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
class ImageWriter:
    """Writes an experiment's images into its folder, each with both metadata chunks."""

    folder: Path
    experiment: str
    backend: str
    count: int

    def write(
        self, sample: Sample, image: Any, model_name: str, lora_hashes: Mapping[str, str] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Write the image of ``sample`` atomically: (its file name, its record)."""
        fname = image_name(sample.index, self.count)
        record = image_record(self.experiment, sample, self.backend)
        params = a1111_parameters(
            sample.prompt, sample.negative, sample.settings, sample.seed, model_name, lora_hashes
        )
        write_atomically(self.folder, fname, image, png_info(params, record))
        return fname, record
