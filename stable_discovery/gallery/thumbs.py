"""Thumbnails, made once on demand and cached on disk under ``<workspace>/.thumbs/``.

A cached thumbnail carries its image's modification time and is used while it is at
least as new as the image; otherwise it is made again.
Writes go to a temporary name and are renamed into place, so concurrent requests for
the same image never see half a file. A workspace that cannot be written still gets
thumbnails, made in memory each time.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

__all__ = ["THUMB_SIZE", "THUMB_DIR", "thumbnail", "ThumbnailError"]

THUMB_SIZE = 320
THUMB_DIR = ".thumbs"
_QUALITY = 82


class ThumbnailError(Exception):
    """The image could not be read."""


def _cache_path(workspace: Path, experiment: str, name: str) -> Path:
    stem = name[: -len(".png")] if name.endswith(".png") else name
    return workspace / THUMB_DIR / experiment / f"{stem}-{THUMB_SIZE}.jpg"


def _render(source: Path) -> bytes:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as opened:
            opened.draft("RGB", (THUMB_SIZE, THUMB_SIZE))
            opened.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
            im = opened if opened.mode == "RGB" else opened.convert("RGB")
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=_QUALITY, optimize=False)
            return buf.getvalue()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ThumbnailError(f"cannot read {source.name}: {exc}") from None


def thumbnail(workspace: Path, experiment: str, name: str, source: Path) -> Path | bytes:
    """The cached thumbnail's path for image ``name`` of ``experiment`` (its real path
    ``source``, already checked as safe), making it when missing or stale; the JPEG bytes
    when it cannot be cached."""
    cached = _cache_path(workspace, experiment, name)
    try:
        src_mtime = source.stat().st_mtime_ns
    except OSError as exc:
        raise ThumbnailError(f"cannot read {source.name}: {exc.strerror}") from None
    try:
        if cached.stat().st_mtime_ns >= src_mtime:
            return cached
    except OSError:
        pass
    data = _render(source)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.utime(tmp, ns=(src_mtime, src_mtime))  # the thumbnail is as new as its image
        os.replace(tmp, cached)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return data
    return cached
