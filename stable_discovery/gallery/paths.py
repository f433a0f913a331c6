"""Which files the gallery may serve: images inside an experiment's folder, nothing else.

A file route is ``/<kind>/<experiment>/<file>``. Each segment is percent-decoded on its
own and must then match a strict pattern, so ``..``, encoded separators (``%2f``,
``%5c``), NUL bytes and absolute paths never reach the file system. What remains is
resolved (symlinks followed) and must still lie inside the experiment's folder, which
must itself lie inside the workspace.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import unquote

__all__ = ["FILE_RE", "split_file_route", "safe_image_path"]

#: experiment names, as ``store.check_name`` allows them
EXPERIMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
#: image files written by the runner (``00042.png``); never dot files, never a separator
FILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,200}\.png$")


def _segment(raw: str) -> str | None:
    try:
        text = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return None
    return text


def split_file_route(path: str) -> tuple[str, str, str] | None:
    """``/thumb/exp/00001.png`` → ``("thumb", "exp", "00001.png")``; None when malformed.

    ``path`` is the request path without its query string, still percent-encoded.
    """
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "":
        return None
    kind, exp, name = (_segment(p) for p in parts[1:])
    if kind is None or exp is None or name is None:
        return None
    if not EXPERIMENT_RE.match(exp) or not FILE_RE.match(name):
        return None
    return kind, exp, name


def _inside(child: str, parent: str) -> bool:
    return child.startswith(parent.rstrip(os.sep) + os.sep)


def safe_image_path(workspace: Path, experiment: str, name: str, root: str | None = None) -> Path | None:
    """The path of ``workspace/experiment/name`` when it is a regular file inside the
    experiment folder, which is inside the workspace (symlinks followed), else None.

    ``root`` is the workspace's real path when the caller knows it. The usual case, a
    plain folder holding a plain file, costs two ``lstat`` calls; a symlink on the way
    is resolved and must still land inside.
    """
    if not EXPERIMENT_RE.match(experiment) or not FILE_RE.match(name):
        return None
    try:
        root = root or os.path.realpath(workspace)
        folder = os.path.join(root, experiment)
        folder_stat = os.lstat(folder)
        if stat.S_ISLNK(folder_stat.st_mode):
            folder = os.path.realpath(folder)
            if not _inside(folder, root) or not os.path.isdir(folder):
                return None
        elif not stat.S_ISDIR(folder_stat.st_mode):
            return None
        target = os.path.join(folder, name)
        target_stat = os.lstat(target)
        if stat.S_ISLNK(target_stat.st_mode):
            target = os.path.realpath(target)
            if not _inside(target, folder) or not os.path.isfile(target):
                return None
        elif not stat.S_ISREG(target_stat.st_mode):
            return None
    except (OSError, ValueError):
        return None
    return Path(target)
