"""The SQL behind the gallery's JSON API: experiment summaries, pages of samples under
filters (keyset paging on the sample index), and the values each slot and sampled
setting took (facets).

Every function takes an open ``sqlite3.Connection`` (one per request) and returns plain
JSON-ready data.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from stable_discovery.store.filters import Filters

__all__ = ["experiment_summaries", "page", "facets", "base_rate"]

#: The condition of the partial covering index ``choices_by_value_idx`` (migration 0003):
#: true of every row, it must appear in a query for SQLite to use that index.
_BY_VALUE = "name <> ''"


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


def _where(
    db: sqlite3.Connection,
    experiment_id: int,
    f: Filters,
    after: int | None = None,
    *,
    counting: bool = False,
) -> tuple[str, list[Any], bool]:
    """Conditions on ``samples s`` alone, each answered from an index, so that neither
    counting nor paging reads a row or joins; and whether an ``IN`` list drives the query.

    Marks are ``IN``/``NOT IN`` lists from ``ratings`` (made by hand, so short). When no
    positive mark list drives the query, the value filter with the fewest samples does:
    its index list, read from the covering index ``(experiment_id, name, choice, idx)``
    from ``after`` on, walked in order so that a page stops early; when ``counting``
    (every match is visited anyway) it is intersected with the next smallest one. Other
    value filters are probed per candidate with ``EXISTS`` on that index, instead of
    materializing lists of tens of thousands of indices each.
    """
    conds = ["s.experiment_id = ?", "s.status = 'done'"]
    params: list[Any] = [experiment_id]
    driven = False

    def rated(condition: str, negate: bool, *extra: Any) -> None:
        conds.append(
            f"s.idx {'NOT IN' if negate else 'IN'} "
            f"(SELECT idx FROM ratings WHERE experiment_id = ? AND {condition})"
        )
        params.extend([experiment_id, *extra])

    if f.favourite is not None:
        rated("favourite = 1", not f.favourite)
        driven = driven or f.favourite
    if f.rejected is not None:
        rated("rejected = 1", not f.rejected)
        driven = driven or f.rejected
    if f.stars == "none":
        rated("stars IS NOT NULL", True)
    elif f.stars is not None:
        rated("stars >= ?", False, int(f.stars))
        driven = True
    values = list(f.values)
    if len(values) > 1 and not driven:
        sizes = {}
        for name, choices in values:
            marks = ", ".join("?" * len(choices))
            sizes[name] = db.execute(
                f"SELECT COUNT(*) FROM choices WHERE experiment_id = ? AND name = ? AND {_BY_VALUE} "
                f"AND choice IN ({marks})",
                (experiment_id, name, *choices),
            ).fetchone()[0]
        values.sort(key=lambda item: sizes[item[0]])
    if values and not driven:
        # the driving list: the smallest value filter (intersected with the next one)
        drivers = values[:2] if counting else values[:1]
        parts = []
        for name, choices in drivers:
            marks = ", ".join("?" * len(choices))
            parts.append(
                f"SELECT idx FROM choices WHERE experiment_id = ? AND name = ? AND {_BY_VALUE} "
                f"AND choice IN ({marks})" + (" AND idx > ?" if after is not None else "")
            )
            params.extend([experiment_id, name, *choices])
            if after is not None:
                params.append(after)
        conds.append(f"s.idx IN ({' INTERSECT '.join(parts)})")
        values = values[len(drivers) :]
        driven = True
    for name, choices in values:
        marks = ", ".join("?" * len(choices))
        conds.append(
            "EXISTS (SELECT 1 FROM choices c INDEXED BY choices_by_value_idx "
            f"WHERE c.experiment_id = ? AND c.name = ? AND c.{_BY_VALUE} "
            f"AND c.choice IN ({marks}) AND c.idx = s.idx)"
        )
        params.extend([experiment_id, name, *choices])
    if after is not None:
        # with a driving list, '+' keeps the planner from walking the whole index instead
        conds.append("+s.idx > ?" if driven else "s.idx > ?")
        params.append(after)
    return " AND ".join(conds), params, driven


def page(
    db: sqlite3.Connection,
    experiment_id: int,
    filters: Filters,
    after: int | None,
    limit: int,
) -> dict[str, Any]:
    """Up to ``limit`` samples with index above ``after``, in index order.

    ``total`` (how many match in all) comes with the first page only (``after`` None);
    ``next`` is the cursor for the following page, or None at the end. The page's indices
    come first, from the indexes alone; then their rows and marks.
    """
    where, params, _ = _where(db, experiment_id, filters, -1 if after is None else after)
    indices = [
        row[0]
        for row in db.execute(
            f"SELECT s.idx FROM samples s WHERE {where} ORDER BY s.idx LIMIT ?", (*params, limit + 1)
        )
    ]
    more = len(indices) > limit
    indices = indices[:limit]
    rows = []
    if indices:
        marks = ", ".join("?" * len(indices))
        rows = db.execute(
            "SELECT s.idx, s.file, s.prompt, COALESCE(r.favourite, 0), r.stars, COALESCE(r.rejected, 0) "
            "FROM samples s LEFT JOIN ratings r ON r.experiment_id = s.experiment_id AND r.idx = s.idx "
            f"WHERE s.experiment_id = ? AND s.idx IN ({marks}) ORDER BY s.idx",
            (experiment_id, *indices),
        ).fetchall()
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
    result: dict[str, Any] = {"items": items, "next": items[-1]["index"] if more and items else None}
    if after is None:
        if not more:
            result["total"] = len(items)
        else:
            where, params, _ = _where(db, experiment_id, filters, counting=True)
            result["total"] = db.execute(f"SELECT COUNT(*) FROM samples s WHERE {where}", params).fetchone()[
                0
            ]
    return result


def facets(db: sqlite3.Connection, experiment_id: int) -> list[dict[str, Any]]:
    """Each slot and sampled setting of the experiment with the values it took:
    ``[{"name", "kind": "slot" | "setting", "values": [{"choice", "text", "count"}]}]``,
    names in the order a sample's trace lists them, values by choice index."""
    counts = db.execute(
        f"SELECT name, choice, COUNT(*) FROM choices WHERE experiment_id = ? AND {_BY_VALUE} "
        "GROUP BY name, choice",
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
        {"name": n, "kind": "setting" if n in setting_names else "slot", "values": groups[n]} for n in names
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
