"""The SQL behind the gallery's JSON API: experiment summaries, pages of samples under
filters (keyset paging on the sample index), and the values each slot and sampled
setting took (facets).

Every function takes an open ``sqlite3.Connection`` (one per request) and returns plain
JSON-ready data.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Optional

from .api import Filters

__all__ = ["experiment_summaries", "page", "facets", "base_rate"]


def experiment_summaries(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every experiment with its image, favourite, rejected and rated counts."""
    done = dict(
        db.execute(
            "SELECT experiment_id, COUNT(*) FROM samples WHERE status = 'done' GROUP BY experiment_id"
        ).fetchall()
    )
    marks = {
        row[0]: row[1:]
        for row in db.execute(
            "SELECT experiment_id, SUM(favourite), SUM(rejected), COUNT(stars) "
            "FROM ratings GROUP BY experiment_id"
        )
    }
    out = []
    for row in db.execute(
        "SELECT id, name, template_path, sampler, seed, count, backend, created_at, updated_at "
        "FROM experiments ORDER BY created_at, id"
    ):
        fav, rej, rated = marks.get(row[0], (0, 0, 0))
        out.append(
            {
                "name": row[1],
                "template_path": row[2],
                "sampler": row[3],
                "seed": row[4],
                "count": row[5],
                "backend": row[6],
                "created_at": row[7],
                "updated_at": row[8],
                "done": done.get(row[0], 0),
                "favourites": fav or 0,
                "rejected": rej or 0,
                "rated": rated or 0,
            }
        )
    return out


def _where(experiment_id: int, f: Filters) -> tuple[str, list[Any]]:
    conds = ["s.experiment_id = ?", "s.status = 'done'"]
    params: list[Any] = [experiment_id]
    if f.favourite is True:
        conds.append("r.favourite = 1")
    elif f.favourite is False:
        conds.append("COALESCE(r.favourite, 0) = 0")
    if f.rejected is True:
        conds.append("r.rejected = 1")
    elif f.rejected is False:
        conds.append("COALESCE(r.rejected, 0) = 0")
    if f.stars == "none":
        conds.append("r.stars IS NULL")
    elif f.stars is not None:
        conds.append("r.stars >= ?")
        params.append(int(f.stars))
    for name, choices in f.values:
        marks = ", ".join("?" * len(choices))
        conds.append(
            "s.idx IN (SELECT c.idx FROM choices c WHERE c.experiment_id = ? AND c.name = ? "
            f"AND c.choice IN ({marks}))"
        )
        params.extend([experiment_id, name, *choices])
    return " AND ".join(conds), params


_FROM = (
    "FROM samples s LEFT JOIN ratings r ON r.experiment_id = s.experiment_id AND r.idx = s.idx"
)


def page(
    db: sqlite3.Connection,
    experiment_id: int,
    filters: Filters,
    after: Optional[int],
    limit: int,
) -> dict[str, Any]:
    """Up to ``limit`` samples with index above ``after``, in index order.

    ``total`` (how many match in all) comes with the first page only (``after`` None);
    ``next`` is the cursor for the following page, or None at the end.
    """
    where, params = _where(experiment_id, filters)
    rows = db.execute(
        "SELECT s.idx, s.file, s.prompt, COALESCE(r.favourite, 0), r.stars, COALESCE(r.rejected, 0) "
        f"{_FROM} WHERE {where} AND s.idx > ? ORDER BY s.idx LIMIT ?",
        (*params, -1 if after is None else after, limit + 1),
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            "index": idx,
            "file": file,
            "prompt": prompt,
            "favourite": bool(fav),
            "stars": stars,
            "rejected": bool(rej),
        }
        for idx, file, prompt, fav, stars, rej in rows
    ]
    result: dict[str, Any] = {"items": items, "next": items[-1]["index"] if more else None}
    if after is None:
        if not more:
            result["total"] = len(items)
        else:
            result["total"] = db.execute(f"SELECT COUNT(*) {_FROM} WHERE {where}", params).fetchone()[0]
    return result


def facets(db: sqlite3.Connection, experiment_id: int) -> list[dict[str, Any]]:
    """Each slot and sampled setting of the experiment with the values it took:
    ``[{"name", "kind": "slot" | "setting", "values": [{"choice", "text", "count"}]}]``,
    names in the order a sample's trace lists them, values by choice index."""
    counts = db.execute(
        "SELECT name, choice, COUNT(*) FROM choices WHERE experiment_id = ? GROUP BY name, choice",
        (experiment_id,),
    ).fetchall()
    if not counts:
        return []
    first = db.execute(
        "SELECT idx, settings FROM samples WHERE experiment_id = ? AND status = 'done' ORDER BY idx LIMIT 1",
        (experiment_id,),
    ).fetchone()
    order: dict[str, int] = {}
    setting_names: set[str] = set()
    if first is not None:
        setting_names = set(json.loads(first[1]))
        for (name,) in db.execute(
            "SELECT name FROM choices WHERE experiment_id = ? AND idx = ? ORDER BY rowid",
            (experiment_id, first[0]),
        ):
            order.setdefault(name, len(order))
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, choice, count in counts:
        text = db.execute(
            "SELECT text FROM choices WHERE experiment_id = ? AND name = ? AND choice = ? LIMIT 1",
            (experiment_id, name, choice),
        ).fetchone()[0]
        groups.setdefault(name, []).append({"choice": choice, "text": text, "count": count})
    names = sorted(groups, key=lambda n: (order.get(n, len(order)), n))
    return [
        {"name": n, "kind": "setting" if n in setting_names else "slot", "values": groups[n]}
        for n in names
    ]


def base_rate(db: sqlite3.Connection, experiment_id: int) -> dict[str, Any]:
    """Images, favourites and the favourite rate of an experiment."""
    images = db.execute(
        "SELECT COUNT(*) FROM samples WHERE experiment_id = ? AND status = 'done'", (experiment_id,)
    ).fetchone()[0]
    favourites = db.execute(
        "SELECT COUNT(*) FROM ratings r JOIN samples s ON s.experiment_id = r.experiment_id "
        "AND s.idx = r.idx WHERE r.experiment_id = ? AND r.favourite = 1 AND s.status = 'done'",
        (experiment_id,),
    ).fetchone()[0]
    return {"images": images, "favourites": favourites, "rate": favourites / images if images else 0.0}
