"""The SQL behind the gallery's JSON API: experiment summaries, pages of samples under
filters (keyset paging on the sample index), and the values each slot and sampled
setting took (facets).

Every function takes an open ``sqlite3.Connection`` (one per request) and returns plain
JSON-ready data.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from stable_discovery.store.filters import ABSENT, Filters
from stable_discovery.store.lookups import base_name, done_count, done_counts, variable_kinds

__all__ = ["experiment_summaries", "page", "facets"]

#: The condition of the partial covering index ``choices_by_value_idx`` (migration 0003):
#: true of every row, it must appear in a query for SQLite to use that index.
_BY_VALUE = "name <> ''"

#: Value filters: (slot or setting name, the choices it may take).
_Values = list[tuple[str, tuple[int, ...]]]


def experiment_summaries(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every experiment with its image, favourite, rejected and rated counts."""
    done = done_counts(db)
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


@dataclass
class _Where:
    """Conditions on ``samples s`` joined by AND, with their parameters in order."""

    experiment_id: int
    conds: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, condition: str, *params: Any) -> None:
        self.conds.append(condition)
        self.params.extend(params)

    def sql(self) -> str:
        return " AND ".join(self.conds)


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
    where = _Where(experiment_id)
    where.add("s.experiment_id = ?", experiment_id)
    where.add("s.status = 'done'")
    driven = _mark_conditions(where, f)
    # a filter that takes the absence matches samples without any row: it is probed
    values = [(name, choices) for name, choices in f.values if ABSENT not in choices]
    for name, choices in f.values:
        if ABSENT in choices:
            _absent_probe(where, name, tuple(c for c in choices if c != ABSENT))
    if values and not driven:
        values = _smallest_first(db, experiment_id, values)
        drivers = values[:2] if counting else values[:1]
        _driving_list(where, drivers, after)
        values = values[len(drivers) :]
        driven = True
    for name, choices in values:
        _value_probe(where, name, choices)
    if after is not None:
        # with a driving list, '+' keeps the planner from walking the whole index instead
        where.add("+s.idx > ?" if driven else "s.idx > ?", after)
    return where.sql(), where.params, driven


def _mark_conditions(where: _Where, f: Filters) -> bool:
    """The favourite, rejected and stars filters; whether one of them drives the query
    (a positive list: favourites, rejected ones, N stars or more)."""
    driven = False

    def rated(condition: str, negate: bool, *extra: Any) -> None:
        where.add(
            f"s.idx {'NOT IN' if negate else 'IN'} "
            f"(SELECT idx FROM ratings WHERE experiment_id = ? AND {condition})",
            where.experiment_id,
            *extra,
        )

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
    return driven


def _value_size(db: sqlite3.Connection, experiment_id: int, name: str, choices: tuple[int, ...]) -> int:
    """How many samples have one of ``choices`` of ``name`` (from the covering index)."""
    marks = ", ".join("?" * len(choices))
    row = db.execute(
        f"SELECT COUNT(*) FROM choices WHERE experiment_id = ? AND name = ? AND {_BY_VALUE} "
        f"AND choice IN ({marks})",
        (experiment_id, name, *choices),
    ).fetchone()
    return int(row[0])


def _smallest_first(db: sqlite3.Connection, experiment_id: int, values: _Values) -> _Values:
    """The value filters, those with the fewest samples first (counted only when there
    are several to order)."""
    if len(values) < 2:
        return values
    sizes = {name: _value_size(db, experiment_id, name, choices) for name, choices in values}
    return sorted(values, key=lambda item: sizes[item[0]])


def _driving_list(where: _Where, drivers: _Values, after: int | None) -> None:
    """``s.idx IN`` the indices of the driving value filters (intersected), from the
    covering index, from ``after`` on."""
    parts, params = [], []
    for name, choices in drivers:
        marks = ", ".join("?" * len(choices))
        parts.append(
            f"SELECT idx FROM choices WHERE experiment_id = ? AND name = ? AND {_BY_VALUE} "
            f"AND choice IN ({marks})" + (" AND idx > ?" if after is not None else "")
        )
        params.extend([where.experiment_id, name, *choices])
        if after is not None:
            params.append(after)
    where.add(f"s.idx IN ({' INTERSECT '.join(parts)})", *params)


def _value_probe(where: _Where, name: str, choices: tuple[int, ...]) -> None:
    """An ``EXISTS`` probe of the covering index for a sample's value of ``name``."""
    marks = ", ".join("?" * len(choices))
    where.add(
        "EXISTS (SELECT 1 FROM choices c INDEXED BY choices_by_value_idx "
        f"WHERE c.experiment_id = ? AND c.name = ? AND c.{_BY_VALUE} "
        f"AND c.choice IN ({marks}) AND c.idx = s.idx)",
        where.experiment_id,
        name,
        *choices,
    )


def _absent_probe(where: _Where, name: str, choices: tuple[int, ...]) -> None:
    """A sample without a value of ``name`` (or with one of ``choices``)."""
    condition = (
        "NOT EXISTS (SELECT 1 FROM choices c INDEXED BY choices_by_value_idx "
        f"WHERE c.experiment_id = ? AND c.name = ? AND c.{_BY_VALUE} AND c.idx = s.idx"
    )
    params: list[Any] = [where.experiment_id, name]
    if choices:
        condition += f" AND c.choice NOT IN ({', '.join('?' * len(choices))})"
        params.extend(choices)
    where.add(condition + ")", *params)


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
    items = _items(db, experiment_id, indices[:limit])
    result: dict[str, Any] = {"items": items, "next": items[-1]["index"] if more and items else None}
    if after is None:
        result["total"] = _count(db, experiment_id, filters) if more else len(items)
    return result


def _items(db: sqlite3.Connection, experiment_id: int, indices: list[int]) -> list[dict[str, Any]]:
    """The listed fields and marks of the samples ``indices``, in index order."""
    if not indices:
        return []
    marks = ", ".join("?" * len(indices))
    rows = db.execute(
        "SELECT s.idx, s.file, s.prompt, COALESCE(r.favourite, 0), r.stars, COALESCE(r.rejected, 0) "
        "FROM samples s LEFT JOIN ratings r ON r.experiment_id = s.experiment_id AND r.idx = s.idx "
        f"WHERE s.experiment_id = ? AND s.idx IN ({marks}) ORDER BY s.idx",
        (experiment_id, *indices),
    ).fetchall()
    return [
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


def _count(db: sqlite3.Connection, experiment_id: int, filters: Filters) -> int:
    """How many samples match ``filters`` in all."""
    where, params, _ = _where(db, experiment_id, filters, counting=True)
    return int(db.execute(f"SELECT COUNT(*) FROM samples s WHERE {where}", params).fetchone()[0])


def facets(db: sqlite3.Connection, experiment_id: int) -> list[dict[str, Any]]:
    """Each traced variable of the experiment with the values it took:
    ``[{"name", "kind", "values": [{"choice", "text", "count"}]}]``, names in template
    order (else the order a sample's trace lists them), values by choice index, and last
    the absence (choice -1, ``"absent": true``) of a variable some samples lack."""
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
    kinds = variable_kinds(db, experiment_id)
    position = {name: k for k, name in enumerate(kinds)}
    names = sorted(
        groups, key=lambda n: (position.get(base_name(n), len(position)), order.get(n, len(order)), n)
    )
    done = done_count(db, experiment_id)
    out = []
    for n in names:
        kind = kinds.get(base_name(n)) or ("setting" if n in setting_names else "slot")
        values = groups[n]
        missing = done - sum(v["count"] for v in values)
        if missing > 0 and kind != "setting":
            values.append({"choice": ABSENT, "text": "", "count": missing, "absent": True})
        out.append({"name": n, "kind": kind, "values": values})
    return out
