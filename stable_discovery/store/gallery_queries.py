"""The SQL behind the gallery's JSON API: experiment summaries, pages of samples under
filters (keyset paging on the sample index, forwards and backwards), the samples a
running experiment added since a moment, and the values each slot and sampled setting
took (facets), counted over everything or under the other filters.

Every function takes an open ``sqlite3.Connection`` (one per request) and returns plain
JSON-ready data.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from stable_discovery.store.filters import ABSENT, Filters
from stable_discovery.store.lookups import (
    base_name,
    done_count,
    done_counts,
    experiment_stamp,
    variable_kinds,
)

__all__ = [
    "END",
    "experiment_summaries",
    "live_stamp",
    "page",
    "recent",
    "facets",
    "follow_filters",
    "matching_indices",
]

#: ``before=END`` asks for the last page of a listing.
END = 1 << 62

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
        "SELECT id, name, template_path, sampler, seed, count, backend, created_at, updated_at, archived "
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
                "archived": bool(row[9]),
                "done": done.get(row[0], 0),
                "favourites": fav or 0,
                "rejected": rej or 0,
                "rated": rated or 0,
            }
        )
    return out


def live_stamp(db: sqlite3.Connection) -> str:
    """A short text that changes whenever anything the experiment list shows changes:
    an experiment made, renamed, archived, removed or given samples, or a mark set.

    Cheap (the experiments table and the ratings' times), so that a page polling for
    changes costs next to nothing while nothing happens.
    """
    digest = hashlib.blake2b(digest_size=12)
    for row in db.execute("SELECT id, name, updated_at, archived FROM experiments ORDER BY id"):
        digest.update(repr(tuple(row)).encode())
    digest.update(
        repr(tuple(db.execute("SELECT COUNT(*), MAX(updated_at) FROM ratings").fetchone())).encode()
    )
    return digest.hexdigest()


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
    before: int | None = None,
    since: float | None = None,
    counting: bool = False,
) -> tuple[str, list[Any], bool]:
    """Conditions on ``samples s`` alone, each answered from an index, so that neither
    counting nor paging reads a row or joins; and whether an ``IN`` list drives the query.

    Marks are ``IN``/``NOT IN`` lists from ``ratings`` (made by hand, so short). When no
    positive mark list drives the query, the value filter with the fewest samples does:
    its index list, read from the covering index ``(experiment_id, name, choice, idx)``
    between ``after`` and ``before``, walked in order so that a page stops early; when
    ``counting`` (every match is visited anyway) it is intersected with the next smallest
    one. Other value filters are probed per candidate with ``EXISTS`` on that index,
    instead of materializing lists of tens of thousands of indices each; a filter that
    accepts an absent value probes the primary key for the name's absence. Words of the
    prompt are ``LIKE`` conditions, checked last.
    """
    where = _Where(experiment_id)
    where.add("s.experiment_id = ?", experiment_id)
    where.add("s.status = 'done'")
    driven = _mark_conditions(where, f)
    present = [(name, choices) for name, choices in f.values if ABSENT not in choices]
    with_absent = [(name, choices) for name, choices in f.values if ABSENT in choices]
    if present and not driven:
        present = _smallest_first(db, experiment_id, present)
        drivers = present[:2] if counting else present[:1]
        _driving_list(where, drivers, after, before)
        present = present[len(drivers) :]
        driven = True
    for name, choices in present:
        where.add(*_value_probe(experiment_id, name, choices))
    for name, choices in with_absent:
        _absent_probe(where, name, choices)
    for word in f.words:
        where.add("s.prompt LIKE ? ESCAPE '\\'", "%" + _like_escape(word) + "%")
    if since is not None:
        where.add("s.created_at > ?", since)
    # with a driving list, '+' keeps the planner from walking the whole index instead
    key = "+s.idx" if driven else "s.idx"
    if after is not None:
        where.add(f"{key} > ?", after)
    if before is not None:
        where.add(f"{key} < ?", before)
    return where.sql(), where.params, driven


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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


def _driving_list(where: _Where, drivers: _Values, after: int | None, before: int | None) -> None:
    """``s.idx IN`` the indices of the driving value filters (intersected), from the
    covering index, between ``after`` and ``before``."""
    parts, params = [], []
    for name, choices in drivers:
        marks = ", ".join("?" * len(choices))
        parts.append(
            f"SELECT idx FROM choices WHERE experiment_id = ? AND name = ? AND {_BY_VALUE} "
            f"AND choice IN ({marks})"
            + (" AND idx > ?" if after is not None else "")
            + (" AND idx < ?" if before is not None else "")
        )
        params.extend([where.experiment_id, name, *choices])
        params.extend(bound for bound in (after, before) if bound is not None)
    where.add(f"s.idx IN ({' INTERSECT '.join(parts)})", *params)


def _value_probe(experiment_id: int, name: str, choices: Collection[int]) -> tuple[Any, ...]:
    """An ``EXISTS`` probe of the covering index for a sample's value of ``name``: the
    condition and its parameters."""
    marks = ", ".join("?" * len(choices))
    return (
        "EXISTS (SELECT 1 FROM choices c INDEXED BY choices_by_value_idx "
        f"WHERE c.experiment_id = ? AND c.name = ? AND c.{_BY_VALUE} "
        f"AND c.choice IN ({marks}) AND c.idx = s.idx)",
        experiment_id,
        name,
        *choices,
    )


def _absent_probe(where: _Where, name: str, choices: tuple[int, ...]) -> None:
    """The samples without ``name`` (from the primary key), or with one of the other
    ``choices``."""
    absent = "NOT EXISTS (SELECT 1 FROM choices c WHERE c.experiment_id = ? AND c.idx = s.idx AND c.name = ?)"
    present = [c for c in choices if c != ABSENT]
    if not present:
        where.add(absent, where.experiment_id, name)
        return
    probe, *params = _value_probe(where.experiment_id, name, present)
    where.add(f"({probe} OR {absent})", *params, where.experiment_id, name)


def page(
    db: sqlite3.Connection,
    experiment_id: int,
    filters: Filters,
    after: int | None,
    limit: int,
    *,
    before: int | None = None,
    total: bool = False,
) -> dict[str, Any]:
    """Up to ``limit`` samples in index order: those with index above ``after`` (the
    first ones when None); or, when ``before`` is given, the last ones below it
    (``END``: the last page of all).

    A forward page has ``next``, the cursor for the following page or None at the end;
    a backward page has ``prev``, the cursor for the page before it or None at the start.
    ``total`` (how many match in all) comes with the first page, and with any page when
    asked. ``stamp`` is the experiment's time of last recording when the page was read:
    :func:`recent` from it gives what was added since. The page's indices come first,
    from the indexes alone; then their rows and marks.
    """
    stamp = experiment_stamp(db, experiment_id)
    backward = before is not None
    where, params, _ = _where(
        db, experiment_id, filters, None if backward else (-1 if after is None else after), before=before
    )
    indices = [
        row[0]
        for row in db.execute(
            f"SELECT s.idx FROM samples s WHERE {where} ORDER BY s.idx{' DESC' if backward else ''} LIMIT ?",
            (*params, limit + 1),
        )
    ]
    more = len(indices) > limit
    indices = sorted(indices[:limit])
    items = _items(db, experiment_id, indices)
    result: dict[str, Any] = {"items": items, "stamp": stamp[1] if stamp else None}
    if backward:
        result["prev"] = items[0]["index"] if more and items else None
    else:
        result["next"] = items[-1]["index"] if more and items else None
    if total or (after is None and not backward):
        first_and_all = after is None and not backward and not more
        result["total"] = len(items) if first_and_all else _count(db, experiment_id, filters)
    return result


def recent(
    db: sqlite3.Connection, experiment_id: int, filters: Filters, since: float, limit: int
) -> dict[str, Any]:
    """The samples matching ``filters`` recorded after the moment ``since`` (a ``stamp``
    of :func:`page` or of an earlier call), in index order, up to ``limit``; ``more``
    when there are others; ``added``: how many match in all; ``stamp``: the moment to
    ask from next time. Found from the ``samples_by_time`` index: a handful of rows
    while a run goes, none when it does not."""
    stamp = experiment_stamp(db, experiment_id)
    where, params, _ = _where(db, experiment_id, filters, since=since)
    indices = [
        row[0]
        for row in db.execute(
            f"SELECT s.idx FROM samples s INDEXED BY samples_by_time WHERE {where} ORDER BY s.idx LIMIT ?",
            (*params, limit + 1),
        )
    ]
    more = len(indices) > limit
    items = _items(db, experiment_id, indices[:limit])
    added = len(items)
    if more:
        added = int(
            db.execute(
                f"SELECT COUNT(*) FROM samples s INDEXED BY samples_by_time WHERE {where}", params
            ).fetchone()[0]
        )
    return {"items": items, "more": more, "added": added, "stamp": stamp[1] if stamp else None}


def _items(db: sqlite3.Connection, experiment_id: int, indices: list[int]) -> list[dict[str, Any]]:
    """The listed fields, image size, choices and marks of the samples ``indices``, in
    index order."""
    if not indices:
        return []
    marks = ", ".join("?" * len(indices))
    rows = db.execute(
        "SELECT s.idx, s.file, s.prompt, json_extract(s.settings, '$.width'), "
        "json_extract(s.settings, '$.height'), COALESCE(r.favourite, 0), r.stars, COALESCE(r.rejected, 0) "
        "FROM samples s LEFT JOIN ratings r ON r.experiment_id = s.experiment_id AND r.idx = s.idx "
        f"WHERE s.experiment_id = ? AND s.idx IN ({marks}) ORDER BY s.idx",
        (experiment_id, *indices),
    ).fetchall()
    traces: dict[int, dict[str, int]] = {}
    for idx, name, choice in db.execute(
        f"SELECT idx, name, choice FROM choices WHERE experiment_id = ? AND idx IN ({marks})",
        (experiment_id, *indices),
    ):
        traces.setdefault(idx, {})[name] = choice
    return [
        {
            "index": idx,
            "file": file,
            "prompt": prompt,
            "width": width,
            "height": height,
            "trace": traces.get(idx, {}),
            "favourite": bool(fav),
            "stars": stars,
            "rejected": bool(rej),
        }
        for idx, file, prompt, width, height, fav, stars, rej in rows
    ]


def _count(db: sqlite3.Connection, experiment_id: int, filters: Filters) -> int:
    """How many samples match ``filters`` in all."""
    where, params, _ = _where(db, experiment_id, filters, counting=True)
    return int(db.execute(f"SELECT COUNT(*) FROM samples s WHERE {where}", params).fetchone()[0])


def matching_indices(db: sqlite3.Connection, experiment_id: int, filters: Filters) -> Iterator[int]:
    """The indices of every sample matching ``filters``, in order (``sdp export``, the
    gallery's download)."""
    where, params, _ = _where(db, experiment_id, filters)
    for (idx,) in db.execute(f"SELECT s.idx FROM samples s WHERE {where} ORDER BY s.idx", params):
        yield int(idx)


def facets(db: sqlite3.Connection, experiment_id: int, settings: Collection[str]) -> list[dict[str, Any]]:
    """Each traced variable of the experiment with the values it took:
    ``[{"name", "kind", "values": [{"choice", "text", "count"}]}]``, names in template
    order (the order of the experiment's variables; else the order a sample's trace lists
    them), values by choice index. ``kind`` is the variable's (slot, setting, choice,
    optional, item, count, wildcard, file); ``settings`` are the names of the template's
    settings (``@name``), for an experiment recorded before kinds were. A variable (not a
    setting) that some samples lack gets a last value ``{"choice": -1, "text": "",
    "count", "absent": true}``."""
    counts = db.execute(
        f"SELECT name, choice, COUNT(*) FROM choices WHERE experiment_id = ? AND {_BY_VALUE} "
        "GROUP BY name, choice",
        (experiment_id,),
    ).fetchall()
    if not counts:
        return []
    first = db.execute(
        "SELECT idx FROM samples WHERE experiment_id = ? AND status = 'done' ORDER BY idx LIMIT 1",
        (experiment_id,),
    ).fetchone()
    order: dict[str, int] = {}
    if first is not None:
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
    for name in names:
        kind = kinds.get(base_name(name)) or ("setting" if name in settings else "slot")
        values = groups[name]
        missing = done - sum(v["count"] for v in values)
        if missing > 0 and kind != "setting":
            values.append({"choice": ABSENT, "text": "", "count": missing, "absent": True})
        out.append({"name": name, "kind": kind, "values": values})
    return out


def follow_filters(
    db: sqlite3.Connection, experiment_id: int, base: list[dict[str, Any]], filters: Filters
) -> list[dict[str, Any]]:
    """The facets ``base`` (from :func:`facets`) with each name's counts taken under the
    other filters: how many images each value would show if it were picked next. A
    name's own value filter does not narrow its counts (its values are alternatives)."""
    if filters.empty:
        return base
    own = {name for name, _ in filters.values}
    shared = [f["name"] for f in base if f["name"] not in own]
    counts: dict[str, dict[int, int]] = {}
    unfiltered = {
        (f["name"], v["choice"]): v["count"] for f in base for v in f["values"] if v["choice"] != ABSENT
    }
    if shared:
        counts.update(_counts_under(db, experiment_id, filters, shared, unfiltered))
    for name in own & {f["name"] for f in base}:
        rest = filters.without(name)
        if not rest.empty:
            counts.update(_counts_under(db, experiment_id, rest, [name], unfiltered))
    out = []
    for facet in base:
        mine = counts.get(facet["name"])
        values = facet["values"]
        if mine is not None:
            values = [{**v, "count": mine.get(v["choice"], 0)} for v in values]
        out.append({**facet, "values": values})
    return out


def _counts_under(
    db: sqlite3.Connection,
    experiment_id: int,
    filters: Filters,
    names: list[str],
    unfiltered: dict[tuple[str, int], int],
) -> dict[str, dict[int, int]]:
    """Per name of ``names``: samples matching ``filters`` per choice, and without the
    name (under :data:`ABSENT`).

    The matching samples drive the count (each looks its choices up by primary key),
    except under filters that only hide marked images (not favourites, not rejected,
    unrated): those take the few marked images away from the ``unfiltered`` counts.
    """
    marks = ", ".join("?" * len(names))
    hidden = _hidden_marks(filters)
    if hidden is not None:
        taken = db.execute(
            "SELECT c.name, c.choice, COUNT(*) FROM ratings r CROSS JOIN choices c "
            "ON c.experiment_id = r.experiment_id AND c.idx = r.idx "
            f"WHERE r.experiment_id = ? AND ({hidden}) AND c.name IN ({marks}) GROUP BY c.name, c.choice",
            (experiment_id, *names),
        ).fetchall()
        minus = {(n, c): k for n, c, k in taken}
        rows = [(n, c, k - minus.get((n, c), 0)) for (n, c), k in unfiltered.items() if n in names]
    else:
        where, params, _ = _where(db, experiment_id, filters, counting=True)
        rows = db.execute(
            "SELECT c.name, c.choice, COUNT(*) FROM samples s CROSS JOIN choices c "
            "ON c.experiment_id = s.experiment_id AND c.idx = s.idx "
            f"WHERE {where} AND c.name IN ({marks}) GROUP BY c.name, c.choice",
            (*params, *names),
        ).fetchall()
    counts: dict[str, dict[int, int]] = {name: {} for name in names}
    for name, choice, n in rows:
        counts[name][choice] = n
    total = _count(db, experiment_id, filters)
    for name in names:
        counts[name][ABSENT] = total - sum(counts[name].values())
    return counts


def _hidden_marks(f: Filters) -> str | None:
    """When ``f`` only hides marked images (favourites, rejected ones, rated ones), the
    condition on ``ratings r`` of the images it hides; otherwise None."""
    if f.values or f.words or f.favourite or f.rejected or f.stars not in (None, "none"):
        return None
    hidden = []
    if f.favourite is False:
        hidden.append("r.favourite = 1")
    if f.rejected is False:
        hidden.append("r.rejected = 1")
    if f.stars == "none":
        hidden.append("r.stars IS NOT NULL")
    return " OR ".join(hidden) or None
