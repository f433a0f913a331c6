"""The package's shape (docs/architecture.md): no import cycles, each room imports only
its own room or lower ones, and functions stay small and simple."""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "stable_discovery"

#: The rooms (folders) from bottom to top; ``errors`` is the root module errors.py.
ROOMS = (
    "errors",
    "space",
    "language",
    "sampling",
    "backends",
    "store",
    "run",
    "analysis",
    "gallery",
    "plugins",
    "cli",
)

#: Modules that gather names from everywhere for users: they may import any room, and
#: count as the top room for whoever imports them.
FACADES = {
    "stable_discovery",  # the package root: load, loads, get_sampler, hookimpl, ...
    "stable_discovery.__main__",  # python -m stable_discovery
    "stable_discovery.hookspecs",  # 0.1 compatibility shims
    "stable_discovery.settings",
    "stable_discovery.samplers",
}

MAX_LINES = 60
MAX_COMPLEXITY = 12

#: Functions allowed over a limit, each with the reason.
ALLOWED_BIG = {
    "language/fastparse.py:parse_bare_fast": (
        "the parser's hot path: one loop over the characters, inlined on purpose "
        "(bench/RESULTS.md, wildcard parse); test_fastparse checks it against the grammar"
    ),
}


# -- the import graph ----------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks (their
    ``else:`` runs); imports inside functions are included."""
    for child in ast.iter_child_nodes(tree):
        yield child
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for node in child.orelse:
                yield node
                yield from _runtime_nodes(node)
        else:
            yield from _runtime_nodes(child)


def _known(name: str) -> str | None:
    """The package module ``name`` refers to: itself, or its longest known prefix."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: resolved against the importing module's package
            package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{anchor}.{base}" if base else anchor
        targets = [f"{base}.{alias.name}" for alias in node.names]
    found = {_known(t) for t in targets if t.split(".")[0] == "stable_discovery"}
    return {m for m in found if m is not None and m != module}


def imports(module: str, tree: ast.AST | None = None) -> set[str]:
    """The package modules ``module`` (its source parsed: ``tree``) imports at run time."""
    if tree is None:
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= _imported(module, node)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def room(module: str) -> str:
    if module in FACADES:
        return ROOMS[-1]
    parts = module.split(".")
    if len(parts) > 2 or MODULES[module].name == "__init__.py":
        name = parts[1]
    else:  # a module at the package root
        name = parts[1] if parts[1] == "errors" else ""
    if name not in ROOMS:
        pytest.fail(f"{module} is in no room: add its room to ROOMS here and to docs/architecture.md")
    return name


def test_the_walker_sees_runtime_imports_only() -> None:
    source = """
from typing import TYPE_CHECKING
import stable_discovery.errors
from stable_discovery.space import nodes
if TYPE_CHECKING:
    from stable_discovery.store.database import Store
else:
    from stable_discovery.run import runner
def f():
    from ..sampling.sample import Sample
    from . import syntax
"""
    found = imports("stable_discovery.language.program", ast.parse(source))
    assert found == {
        "stable_discovery.errors",
        "stable_discovery.space.nodes",
        "stable_discovery.run.runner",
        "stable_discovery.sampling.sample",
        "stable_discovery.language.syntax",
    }
    assert all(m in MODULES for deps in GRAPH.values() for m in deps)


def test_no_import_cycles() -> None:
    try:
        graphlib.TopologicalSorter(GRAPH).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        pytest.fail("import cycle: " + " -> ".join(reversed(cycle)))


def test_each_room_imports_only_its_own_room_or_lower_ones() -> None:
    wrong = []
    for module, deps in sorted(GRAPH.items()):
        if module in FACADES:
            continue
        rank = ROOMS.index(room(module))
        for dep in sorted(deps):
            if ROOMS.index(room(dep)) > rank:
                wrong.append(f"{module} ({room(module)}) imports {dep} ({room(dep)})")
    assert not wrong, "rooms, bottom to top: " + " < ".join(ROOMS) + "\n" + "\n".join(wrong)


# -- function size -------------------------------------------------------------------------


def _complexity(statements: list[ast.stmt]) -> int:
    """Decision points, counted as ruff's C901 (McCabe) counts them."""
    n = 0
    for s in statements:
        if isinstance(s, (ast.If, ast.For, ast.AsyncFor, ast.While)):
            n += 1 + _complexity(s.body) + _complexity(s.orelse)
        elif isinstance(s, (ast.With, ast.AsyncWith, ast.ClassDef)):
            n += _complexity(s.body)
        elif isinstance(s, ast.Try):
            n += len(s.handlers) + sum(_complexity(h.body) for h in s.handlers)
            n += _complexity(s.body) + _complexity(s.orelse) + _complexity(s.finalbody)
        elif isinstance(s, ast.Match):
            n += len(s.cases) - 1 + sum(_complexity(c.body) for c in s.cases)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n += 1 + _complexity(s.body)
    return n


@dataclass(frozen=True)
class Function:
    where: str  # "folder/module.py:Class.name"
    lines: int  # the body's lines, docstring left out
    complexity: int


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    if isinstance(body[0], ast.Expr) and isinstance(getattr(body[0].value, "value", None), str):
        body = body[1:]  # the docstring
    assert fn.end_lineno is not None
    return fn.end_lineno - body[0].lineno + 1 if body else 0


def functions(node: ast.AST, path: str, prefix: str = "") -> Iterator[Function]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + child.name
            yield Function(f"{path}:{name}", _body_lines(child), 1 + _complexity(child.body))
            yield from functions(child, path, name + ".")
        elif isinstance(child, ast.ClassDef):
            yield from functions(child, path, prefix + child.name + ".")
        else:
            yield from functions(child, path, prefix)


def package_functions() -> list[Function]:
    found = []
    for path in MODULES.values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found.extend(functions(tree, path.relative_to(PACKAGE).as_posix()))
    return found


def test_the_measures_count_what_they_should() -> None:
    source = '''
def f(x):
    """A docstring of
    two lines."""
    if x:
        return 1
    elif x > 2:
        return 2
    for i in range(x):
        try:
            pass
        except ValueError:
            pass

    return 3
'''
    (fn,) = functions(ast.parse(source), "m.py")
    assert fn == Function("m.py:f", 11, 5)


def test_functions_are_small_and_simple() -> None:
    over = [f for f in package_functions() if f.lines > MAX_LINES or f.complexity > MAX_COMPLEXITY]
    unexpected = [
        f"{f.where}: {f.lines} lines, complexity {f.complexity}" for f in over if f.where not in ALLOWED_BIG
    ]
    assert not unexpected, (
        f"functions over {MAX_LINES} lines (docstring left out) or complexity {MAX_COMPLEXITY}; "
        "split them, or add them to ALLOWED_BIG with a reason:\n" + "\n".join(unexpected)
    )
    stale = set(ALLOWED_BIG) - {f.where for f in over}
    assert not stale, f"within the limits now, remove from ALLOWED_BIG: {sorted(stale)}"
