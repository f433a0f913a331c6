"""Faults of the machine, not of the program: a full disk, a read-only or unreadable
folder, a damaged or newer database. Each becomes one line that says what happened,
where, and what to do, instead of "internal error … this is a bug".

:func:`describe` recognises them among the exceptions that reach the command line (or
the gallery's request handler); :func:`fault` turns one into a :class:`StoreFault`.
The SQLite side is recognised by error name (Python 3.11+) or, before that, by the
message SQLite gives.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from stable_discovery.errors import SdpError

__all__ = ["StoreError", "StoreFault", "describe", "fault", "os_fault", "is_fault", "kind_of"]


class StoreError(SdpError):
    """Something about the store stops a command at run time: exit status 1."""

    exit_code = 1


class StoreFault(StoreError):
    """A fault of the machine (disk full, read-only, damaged or newer database).

    ``kind`` names it for code that reacts to some of them: ``"full"``, ``"damaged"``,
    ``"read-only"``, ``"newer"``, ``"not-a-store"``, ``"lost"``, or ``""``.
    """

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


#: errno → (what happened, what to do)
_OS_FAULTS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("the disk is full", "free some space"),
    errno.EROFS: ("the file system is read-only", "use a writable --workspace"),
    errno.EACCES: ("permission denied", "check the folder's owner and permissions"),
    errno.EPERM: ("operation not permitted", "check the folder's owner and permissions"),
    errno.EIO: ("input/output error", "check the disk (dmesg), then try again"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or close other programs"),
    errno.ENFILE: ("too many open files on the system", "close other programs"),
    errno.ENAMETOOLONG: ("the path is too long", "use a shorter --workspace or name"),
}
if hasattr(errno, "EDQUOT"):
    _OS_FAULTS[errno.EDQUOT] = ("the disk quota is exhausted", "free some space")

#: SQLite error name prefix → :attr:`StoreFault.kind`
_KINDS = {
    "SQLITE_FULL": "full",
    "SQLITE_CORRUPT": "damaged",
    "SQLITE_NOTADB": "damaged",
    "SQLITE_READONLY": "read-only",
}
#: errno → :attr:`StoreFault.kind`
_OS_KINDS = {errno.ENOSPC: "full", errno.EROFS: "read-only", getattr(errno, "EDQUOT", errno.ENOSPC): "full"}

#: (SQLite error name prefix, words in its message) → (what happened, what to do)
_SQLITE_FAULTS: tuple[tuple[str, str, str, str], ...] = (
    ("SQLITE_FULL", "disk is full", "the disk is full", "free some space"),
    (
        "SQLITE_CORRUPT",
        "malformed",
        "the database is damaged",
        "restore it from a backup, or rebuild it from the images' metadata with `sdp repair`",
    ),
    (
        "SQLITE_NOTADB",
        "not a database",
        "the file is not an SQLite database (damaged, or something else)",
        "restore it from a backup, or rebuild it from the images' metadata with `sdp repair`",
    ),
    (
        "SQLITE_READONLY",
        "readonly database",
        "the database cannot be written (read-only file or file system)",
        "use a writable --workspace; reading commands (runs, show, stats, gallery) still work",
    ),
    ("SQLITE_CANTOPEN", "unable to open", "the database cannot be opened", "check the folder's permissions"),
    ("SQLITE_PERM", "access permission denied", "permission denied", "check the folder's permissions"),
    (
        "SQLITE_IOERR",
        "disk i/o error",
        "input/output error",
        "check the disk (full? removed?), then try again",
    ),
    (
        "SQLITE_BUSY",
        "database is locked",
        "the database stayed locked by another process for 30 s",
        "try again when it is less busy",
    ),
)


def is_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the machine that :func:`describe` words."""
    return describe(exc, None) is not None


def _sqlite_match(exc: sqlite3.Error) -> tuple[str, str, str, str] | None:
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    if "disk is full" in text:  # also an SQLITE_IOERR whose cause is a full disk
        return _SQLITE_FAULTS[0]
    for entry in _SQLITE_FAULTS:
        prefix, words = entry[0], entry[1]
        if (name and name.startswith(prefix)) or (not name and words in text):
            return entry
    return None


def _sqlite_fault(exc: sqlite3.Error) -> tuple[str, str] | None:
    found = _sqlite_match(exc)
    return None if found is None else (found[2], found[3])


def kind_of(exc: BaseException) -> str:
    """The :attr:`StoreFault.kind` of a fault (``""`` when it has none)."""
    if isinstance(exc, StoreFault):
        return exc.kind
    if isinstance(exc, sqlite3.Error):
        found = _sqlite_match(exc)
        return _KINDS.get(found[0], "") if found is not None else ""
    if isinstance(exc, OSError) and exc.errno is not None:
        return _OS_KINDS.get(exc.errno, "")
    return ""


def describe(exc: BaseException, where: Path | str | None) -> str | None:
    """One line for a fault (``where``: the file or folder it happened at, when the
    exception does not say), or None when ``exc`` is not one."""
    if isinstance(exc, StoreFault):
        return str(exc)
    if isinstance(exc, sqlite3.Error):
        found = _sqlite_fault(exc)
        if found is None:
            return None
        what, todo = found
        place = f"{where}: " if where is not None else ""
        if where is not None and Path(where).name == "discovery.db":
            todo = todo.replace("`sdp repair`", f"`sdp repair --workspace {Path(where).parent}`")
        return f"{what} ({place}{exc}); {todo}"
    if isinstance(exc, OSError) and exc.errno in _OS_FAULTS:
        what, todo = _OS_FAULTS[exc.errno]
        path = exc.filename if exc.filename is not None else where
        place = f" at {os.fsdecode(path)}" if path is not None else ""
        return f"{what}{place}; {todo}"
    return None


def fault(exc: BaseException, where: Path | str | None, hint: str = "") -> StoreFault | None:
    """``exc`` as a :class:`StoreFault` (``hint`` appended), or None when it is not one."""
    text = describe(exc, where)
    if text is None:
        return None
    return StoreFault(text + (f"; {hint}" if hint else ""), kind_of(exc))


def os_fault(exc: OSError, what: str) -> StoreFault:
    """An OS error while doing ``what`` (``"writing sdp-runs/x/00001.png"``): a
    :class:`StoreFault` whose message says what went wrong and what to do."""
    found = describe(exc, None)
    if found is not None:
        return StoreFault(f"{what}: {found}", kind_of(exc))
    return StoreFault(f"{what}: {exc.strerror or exc}")
