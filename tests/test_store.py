"""The store as the project's one data-access layer: no SQL outside it, stores made by the
previous version open unchanged, and the small queries the other stages ask of it."""

from __future__ import annotations

import ast
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stable_discovery
from stable_discovery.analysis.stats import experiment_stats
from stable_discovery.errors import UsageError
from stable_discovery.sampling.sample import Chosen, Sample
from stable_discovery.store import gallery_queries, migrations
from stable_discovery.store.database import (
    Experiment,
    ExperimentSpec,
    Store,
    StoreError,
    read_experiment_names,
)
from stable_discovery.store.filters import Filters
from stable_discovery.store.stats_queries import ValueCount, experiment_counts

PACKAGE = Path(stable_discovery.__file__).resolve().parent
STORE_PACKAGE = PACKAGE / "store"

# ---------------------------------------------------------------------------------------
# no SQL outside the store

#: SQL as the project writes it, keywords in capitals (prose says "select … from" too);
#: SQL in lower case is caught by its call instead: nothing outside the store may call
#: ``execute``, ``executemany`` or ``executescript``.
_SQL = re.compile(
    r"\bSELECT\b.*?\bFROM\b"
    r"|\bINSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\b"
    r"|\bUPDATE\s+\S+\s+SET\b"
    r"|\bDELETE\s+FROM\b"
    r"|\bCREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\b"
    r"|\bPRAGMA\b",
    re.DOTALL,
)
_EXECUTE = {"execute", "executemany", "executescript"}


def _text(node: ast.AST) -> str | None:
    """The text of a string expression, parts computed at run time as ``{}``: a literal,
    an f-string, or a ``+`` of them; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(part) or "{}" for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is not None or right is not None:
            return (left or "{}") + (right or "{}")
    return None


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of a module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def sql_findings(source: str, where: str = "<source>") -> list[str]:
    """``where:line: what`` for each SQL string, ``sqlite3`` import and ``execute`` call
    in ``source``.

    Docstrings are prose (they may say "select … from"); every other string counts, an
    f-string or a ``+`` of strings as a whole.
    """
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "sqlite3" for a in node.names):
            found.append(f"{where}:{node.lineno}: imports sqlite3")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlite3":
            found.append(f"{where}:{node.lineno}: imports from sqlite3")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _EXECUTE:
            found.append(f"{where}:{node.lineno}: calls {node.func.attr}")
        text = _text(node)
        if text is None:
            todo.extend(ast.iter_child_nodes(node))
        elif id(node) not in skip and _SQL.search(text):
            found.append(f"{where}:{getattr(node, 'lineno', 0)}: SQL {text[:60]!r}")
    return sorted(found)


def _modules_outside_the_store() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if STORE_PACKAGE not in path.parents:
            yield path


def test_no_sql_and_no_sqlite3_outside_the_store() -> None:
    modules = list(_modules_outside_the_store())
    assert len(modules) > 30  # the walk sees the whole package
    found = [
        finding
        for path in modules
        for finding in sql_findings(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    ]
    assert found == [], "SQL belongs in stable_discovery/store/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source, kinds",
    [
        ('rows = store.db.execute("SELECT id FROM experiments WHERE name = ?", (name,))', ["SQL", "calls"]),
        ('q = f"SELECT {cols} FROM ratings r {join} WHERE r.experiment_id = ?"', ["SQL"]),
        ('q = "SELECT c.name, COUNT(*) " + f"FROM choices c WHERE {cond}"', ["SQL"]),
        ('q = """\n    SELECT name\n    FROM experiments\n"""', ["SQL"]),
        ('q = "INSERT OR REPLACE INTO samples VALUES (?)"', ["SQL"]),
        ('q = f"UPDATE ratings SET {sets} WHERE idx = ?"', ["SQL"]),
        ('q = "DELETE FROM choices WHERE idx = ?"', ["SQL"]),
        ('q = "CREATE UNIQUE INDEX x ON t (a)"', ["SQL"]),
        ('q = "CREATE TABLE t (a INTEGER)"', ["SQL"]),
        ('q = "PRAGMA journal_mode=WAL"', ["SQL"]),
        ("db.executemany(query, rows)", ["calls"]),
        ('store.db.execute("select id from experiments")', ["calls"]),
        ("import sqlite3", ["imports"]),
        ("import sqlite3 as lite", ["imports"]),
        ("from sqlite3 import connect", ["imports"]),
        ("def names():\n    import sqlite3\n    return sqlite3", ["imports"]),
        ('class A:\n    """Doc."""\n\n    Q = "SELECT 1 FROM t"', ["SQL"]),
    ],
)
def test_the_sql_check_finds(source: str, kinds: list[str]) -> None:
    assert sorted(finding.split(": ")[1].split()[0] for finding in sql_findings(source)) == kinds


@pytest.mark.parametrize(
    "source",
    [
        '"""Select the samples from the store; update the table set by the user."""',
        'def f():\n    """SELECT * FROM t, as a docstring, is prose."""\n    return 1',
        'message = "pick a value from the list"',
        'help = "which experiment to select, from sdp runs"',
        'name = "update"',
        "import sqlite3_helpers_are_not_sqlite3",
        "executor.submit(job)",
    ],
)
def test_the_sql_check_leaves_prose_alone(source: str) -> None:
    assert sql_findings(source) == []


# ---------------------------------------------------------------------------------------
# stores made by the previous version

# The migrations of the previous version (``git show 9cda8ef:stable_discovery/store.py``),
# copied as they were: SQL strings that it split on ';' and ran one statement at a time.
OLD_MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_experiments_and_samples",
        """
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            template_path TEXT,
            template_text TEXT NOT NULL,
            template_hash TEXT NOT NULL,
            wildcards_hash TEXT NOT NULL,
            sampler TEXT NOT NULL,
            seed INTEGER NOT NULL,
            count INTEGER NOT NULL,
            backend TEXT NOT NULL,
            overrides TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE samples (
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            idx INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            negative TEXT NOT NULL,
            settings TEXT NOT NULL,
            seed INTEGER NOT NULL,
            status TEXT NOT NULL,
            file TEXT,
            batch_size INTEGER,
            seconds REAL,
            created_at REAL NOT NULL,
            PRIMARY KEY (experiment_id, idx)
        );
        CREATE TABLE choices (
            experiment_id INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            name TEXT NOT NULL,
            choice INTEGER NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (experiment_id, idx, name)
        );
        CREATE INDEX choices_by_value ON choices (experiment_id, name, choice);
        """,
    ),
    (
        "0002_ratings",
        """
        CREATE TABLE ratings (
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            idx INTEGER NOT NULL,
            favourite INTEGER NOT NULL DEFAULT 0,
            stars INTEGER,
            rejected INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL,
            PRIMARY KEY (experiment_id, idx),
            CHECK (favourite IN (0, 1) AND rejected IN (0, 1)
                   AND (stars IS NULL OR stars BETWEEN 1 AND 5))
        );
        CREATE INDEX ratings_favourites ON ratings (experiment_id, favourite);
        """,
    ),
    (
        # The gallery's filtered pages and counts over 100,000 samples. A covering index
        # gives a slot value's sample indices without reading rows; it is partial on a
        # condition true of every row (``name <> ''``), so that only queries that say so
        # use it and the plans of every other query stay as they were. Done samples are
        # counted and checked from an index too.
        "0003_gallery_indexes",
        """
        CREATE INDEX choices_by_value_idx ON choices (experiment_id, name, choice, idx) WHERE name <> '';
        CREATE INDEX samples_by_status ON samples (experiment_id, status, idx);
        """,
    ),
)

_OLD_TEMPLATE = "animal = a cat | a dog\nprompt = <animal> in a garden\n"


def _old_migrate(db: sqlite3.Connection) -> None:
    """What the previous version's ``Store._migrate`` did."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, sql in OLD_MIGRATIONS:
        db.execute("BEGIN IMMEDIATE")
        for statement in sql.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, 1000.0 + len(name)))
        db.execute("COMMIT")


def old_store(workspace: Path) -> None:
    """A workspace as the previous version left it: its schema, one experiment of three
    samples (two done), traces and two ratings."""
    workspace.mkdir(parents=True)
    db = sqlite3.connect(workspace / "discovery.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        _old_migrate(db)
        db.execute(
            "INSERT INTO experiments (name, template_path, template_text, template_hash, "
            "wildcards_hash, sampler, seed, count, backend, overrides, created_at, updated_at) "
            "VALUES ('old', 'old.sdp', ?, 'h', '', 'random', 7, 3, 'dummy', ?, 10.0, 20.0)",
            (_OLD_TEMPLATE, '{"steps": "4"}'),
        )
        for idx, status in ((0, "done"), (1, "done"), (2, "failed")):
            db.execute(
                "INSERT INTO samples (experiment_id, idx, prompt, negative, settings, seed, status, "
                "file, batch_size, seconds, created_at) "
                "VALUES (1, ?, ?, '', '{\"steps\": 4}', ?, ?, ?, 1, 0.5, 15.0)",
                (idx, f"{'a cat' if idx != 1 else 'a dog'} in a garden", 100 + idx, status, f"{idx:05d}.png"),
            )
        db.executemany(
            "INSERT INTO choices (experiment_id, idx, name, choice, text) VALUES (1, ?, 'animal', ?, ?)",
            [(0, 0, "a cat"), (1, 1, "a dog")],
        )
        db.execute(
            "INSERT INTO ratings (experiment_id, idx, favourite, stars, rejected, updated_at) "
            "VALUES (1, 0, 1, 4, 0, 30.0), (1, 1, 0, NULL, 1, 30.0)"
        )
    finally:
        db.close()


def _applied(workspace: Path) -> list[tuple[str, float]]:
    db = sqlite3.connect(workspace / "discovery.db")
    try:
        return db.execute("SELECT name, applied_at FROM _migrations ORDER BY name").fetchall()
    finally:
        db.close()


@pytest.fixture()
def no_migration_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the migrations that run while the test does."""
    ran: list[str] = []

    def recording(name: str, fn: migrations.Migration) -> migrations.Migration:
        def run(db: sqlite3.Connection) -> None:
            ran.append(name)
            fn(db)

        return run

    monkeypatch.setattr(
        migrations, "MIGRATIONS", [(name, recording(name, fn)) for name, fn in migrations.MIGRATIONS]
    )
    return ran


def test_a_store_of_the_previous_version_opens_reads_and_works(
    tmp_path: Path, no_migration_runs: list[str]
) -> None:
    ws = tmp_path / "ws"
    old_store(ws)
    applied = _applied(ws)
    assert [name for name, _ in applied] == [name for name, _ in OLD_MIGRATIONS]
    newer = [name for name, _ in migrations.MIGRATIONS if name not in dict(OLD_MIGRATIONS)]
    with Store(ws) as store:
        exp = store.require("old")
        assert (exp.template_text, exp.seed, exp.count, exp.overrides) == (
            _OLD_TEMPLATE,
            7,
            3,
            {"steps": "4"},
        )
        assert (exp.done, exp.created_at, exp.updated_at) == (2, 10.0, 20.0)
        record = store.record(exp, 1)
        assert record is not None
        assert record["prompt"] == "a dog in a garden" and record["settings"] == {"steps": 4}
        assert record["trace"] == {"animal": {"index": 1, "text": "a dog"}}
        assert record["rating"] == {"favourite": False, "stars": None, "rejected": True}
        assert store.rating(exp, 0) == {"favourite": True, "stars": 4, "rejected": False}
        assert [store.is_done(exp.id, i) for i in range(4)] == [True, True, False, False]
        # and it goes on working: a new sample, a mark, the gallery and the statistics
        sample = Sample(2, "a cat in a garden", "", {"steps": 4}, 102, {"animal": Chosen(0, "a cat")})
        store.record_done(exp.id, [(sample, "00002.png", 0.5, 1)])
        store.rate(exp, [2], favourite=True)
        page = gallery_queries.page(store.db, exp.id, Filters(favourite=True), None, 10)
        assert [item["index"] for item in page["items"]] == [0, 2] and page["total"] == 2
        report = experiment_stats(store, exp)
        assert (report.images, report.favourites, report.rejected) == (2, 2, 1)
        assert {v.kind for v in report.values} == {"slot"}  # kinds from before they were recorded
        assert not exp.archived
    assert no_migration_runs == newer  # the migrations added since, each once
    assert _applied(ws)[: len(applied)] == applied
    assert [name for name, _ in _applied(ws)] == [name for name, _ in migrations.MIGRATIONS]
    with Store(ws):
        pass
    assert no_migration_runs == newer


def _normalized(sql: str | None) -> str | None:
    return None if sql is None else " ".join(sql.split())


def schema(workspace: Path) -> dict[str, Any]:
    """Every table, column, index (with its columns and ``WHERE``) of a store."""
    db = sqlite3.connect(workspace / "discovery.db")
    try:
        objects = db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        tables = [name for kind, name, _, _ in objects if kind == "table"]
        return {
            "objects": [(kind, name, table, _normalized(sql)) for kind, name, table, sql in objects],
            "columns": {
                t: db.execute("SELECT * FROM pragma_table_xinfo(?)", (t,)).fetchall() for t in tables
            },
            "indexes": {t: db.execute("SELECT * FROM pragma_index_list(?)", (t,)).fetchall() for t in tables},
            "index columns": {
                name: db.execute("SELECT * FROM pragma_index_xinfo(?)", (name,)).fetchall()
                for kind, name, _, _ in objects
                if kind == "index"
            },
        }
    finally:
        db.close()


def test_a_fresh_store_has_the_schema_the_previous_version_made(tmp_path: Path) -> None:
    """A store made now and a store of the previous version once opened now have the same
    schema: migrations bring an old store exactly where a new one starts."""
    old_store(tmp_path / "old")
    Store(tmp_path / "old").close()
    Store(tmp_path / "new").close()
    old, new = schema(tmp_path / "old"), schema(tmp_path / "new")
    assert new == old
    tables = {name for kind, name, _, _ in new["objects"] if kind == "table"}
    assert tables == {"_migrations", "experiments", "samples", "choices", "ratings", "variables", "runs"}
    assert [c[1] for c in new["columns"]["variables"]] == ["experiment_id", "name", "kind", "position"]
    assert [c[1] for c in new["columns"]["choices"]] == ["experiment_id", "idx", "name", "choice", "text"]
    sql = {name: sql for _, name, _, sql in new["objects"]}
    assert sql["choices_by_value_idx"] is not None and sql["choices_by_value_idx"].endswith(
        "WHERE name <> ''"
    )
    partial = {row[1]: row[4] for row in new["indexes"]["choices"]}
    assert partial == {"choices_by_value_idx": 1, "choices_by_value": 0, "sqlite_autoindex_choices_1": 0}


# ---------------------------------------------------------------------------------------
# the store's small questions and the statistics' counts


def _spec(name: str = "pets", **changes: Any) -> ExperimentSpec:
    fields: dict[str, Any] = {
        "name": name,
        "template_path": None,
        "template_text": _OLD_TEMPLATE,
        "wildcards_hash": "",
        "sampler": "random",
        "seed": 1,
        "count": 6,
        "backend": "dummy",
        "overrides": {},
    }
    fields.update(changes)
    return ExperimentSpec(**fields)


def _sample(idx: int, animal: int, steps: int | None = None) -> Sample:
    trace = {"animal": Chosen(animal, ["a cat", "a dog"][animal])}
    if steps is not None:
        trace["steps"] = Chosen(steps, ["10", "20"][steps])
    return Sample(idx, "p", "", {}, idx, trace)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "ws") as s:
        yield s


def _filled(store: Store) -> Experiment:
    """Six done samples: animal 0,0,0,1,1,1; steps on the first four only. Marks:
    0 favourite, 1 favourite and rejected, 3 three stars, 4 five stars, 5 rejected."""
    exp = store.open_experiment(_spec())
    samples = [_sample(i, i // 3, i % 2 if i < 4 else None) for i in range(6)]
    store.record_done(exp.id, [(s, f"{s.index:05d}.png", 0.1, 1) for s in samples])
    store.rate(exp, [0, 1], favourite=True)
    store.rate(exp, [1, 5], rejected=True)
    store.rate(exp, [3], stars=3)
    store.rate(exp, [4], stars=5)
    return store.require("pets")


def test_lookups(store: Store) -> None:
    assert store.experiment_id("pets") is None
    exp = store.open_experiment(_spec())
    assert store.experiment_id("pets") == exp.id
    stamp = store.experiment_stamp(exp.id)
    assert stamp == (exp.created_at, exp.updated_at)
    assert not store.is_done(exp.id, 0)
    store.record_done(exp.id, [(_sample(0, 0), "00000.png", 0.1, 1)])
    assert store.is_done(exp.id, 0) and not store.is_done(exp.id, 1)
    assert store.experiment_stamp(exp.id)[1] > stamp[1]  # recording moves updated_at
    with pytest.raises(StoreError, match="no experiment with id 99"):
        store.experiment_stamp(99)


def test_read_experiment_names_reads_without_writing(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        read_experiment_names(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no database was created
    with Store(tmp_path) as store:
        assert read_experiment_names(tmp_path) == set()
        store.open_experiment(_spec("a"))
        store.open_experiment(_spec("b"))
    assert read_experiment_names(tmp_path) == {"a", "b"}


def test_open_experiment_same_new_respecified_and_refused(store: Store) -> None:
    first = store.open_experiment(_spec())
    assert store.open_experiment(_spec()) == first
    # nothing made yet: the name takes the new spec
    again = store.open_experiment(_spec(seed=2))
    assert (again.id, again.seed) == (first.id, 2)
    store.record_done(again.id, [(_sample(0, 0), "00000.png", 0.1, 1)])
    with pytest.raises(UsageError, match=r"seed 2 → 3\. Nothing was changed\. .* --name pets-2$"):
        store.open_experiment(_spec(seed=3))
    assert store.require("pets").seed == 2


def test_experiment_counts(store: Store) -> None:
    exp = _filled(store)
    counts = experiment_counts(store.db, exp.id)
    assert (counts.done, counts.rejected, counts.winners) == (6, 2, 1)  # 1 is rejected: no winner
    assert counts.values == (
        ValueCount("animal", 0, "a cat", total=3, winners=1, rejected=1),
        ValueCount("animal", 1, "a dog", total=3, winners=0, rejected=1),
        ValueCount("steps", 0, "10", total=2, winners=1, rejected=0),
        ValueCount("steps", 1, "20", total=2, winners=0, rejected=1),
    )
    by_stars = experiment_counts(store.db, exp.id, min_stars=3)
    assert by_stars.winners == 3
    assert [v.winners for v in by_stars.values] == [1, 2, 1, 1]
    assert experiment_counts(store.db, exp.id, min_stars=5).winners == 2
    other = store.open_experiment(_spec("empty"))
    assert experiment_counts(store.db, other.id) == type(counts)(values=(), done=0, rejected=0, winners=0)


def test_gallery_summaries(store: Store) -> None:
    _filled(store)
    (summary,) = gallery_queries.experiment_summaries(store.db)
    assert (
        summary["name"],
        summary["done"],
        summary["favourites"],
        summary["rejected"],
        summary["rated"],
    ) == (
        "pets",
        6,
        2,
        2,
        2,
    )
