"""The gallery following the workspace while runs add images: the experiment list with
an ``ETag`` (a page polling it gets ``304 Not Modified`` while nothing changes, for the
price of one small query), which experiments a run is writing to right now, and what a
running experiment added since a moment.

The page polls ``/api/experiments`` every few seconds with ``If-None-Match``; when the
open experiment has moved on, it asks ``/api/samples?since=STAMP`` for the new images
that match its filters and puts them in place, without reloading.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_discovery.run.files import lock_holders
from stable_discovery.store import gallery_queries as queries
from stable_discovery.store.database import Store

__all__ = ["Reply", "experiments_reply"]


@dataclass(frozen=True)
class Reply:
    """A JSON answer with its own status and headers (``data`` None: no body)."""

    status: int
    data: Any
    headers: dict[str, str] = field(default_factory=dict)


def experiments_reply(workspace: Path, store: Store, if_none_match: str | None) -> Reply:
    """Every experiment with its counts and whether a run is writing to it, tagged; a
    ``304`` without a body when the page already has this version."""
    stamp = queries.live_stamp(store.db)
    folders = [p for p in workspace.iterdir() if (p / ".lock").exists()] if workspace.is_dir() else []
    held = lock_holders(folders)
    running = sorted(p.name for p in held)
    etag = '"' + hashlib.blake2b(f"{stamp}|{','.join(running)}".encode(), digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Reply(304, None, headers)
    summaries = queries.experiment_summaries(store.db)
    for summary in summaries:
        summary["running"] = summary["name"] in running and summary["done"] < summary["count"]
    return Reply(200, {"workspace": str(workspace), "experiments": summaries}, headers)
