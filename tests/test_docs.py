"""The documents point at what is there: every relative link of a Markdown file (and its
#anchor) resolves, and every ``*.md`` document a file of the project names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO

SKIP = {".git", ".venv", "venv", "build", "dist", "node_modules", "__pycache__"}
TEXT = {".md", ".py", ".lark", ".toml", ".txt", ".sdp", ".js", ".html", ".css", ""}


def project_files() -> list[Path]:
    found = []
    for path in sorted(REPO.rglob("*")):
        parts = path.relative_to(REPO).parts
        if any(p in SKIP or p.startswith(".") or p.endswith(".egg-info") for p in parts[:-1]):
            continue
        if path.is_file() and path.suffix in TEXT and not path.name.startswith("."):
            found.append(path)
    return found


FILES = project_files()
MARKDOWN = [p for p in FILES if p.suffix == ".md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_the_documents_are_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in MARKDOWN}
    assert {"README.md", "docs/language.md", "docs/architecture.md", "docs/plugins.md"} <= names


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_resolve(path: Path) -> None:
    broken = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        where = (path.parent / file).resolve() if file else path
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{path.relative_to(REPO)}: " + "; ".join(broken)


def test_documents_named_anywhere_exist() -> None:
    basenames = {p.name for p in FILES}
    missing = []
    for path in FILES:
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r"(?<![\w/.:-])((?:[\w.-]+/)*[\w.-]+\.md)\b", text):
            name = m.group(1)
            if name.startswith("bench/results/"):  # what a benchmark writes when run
                continue
            if "/" in name:
                ok = (REPO / name).exists() or (path.parent / name).exists()
            else:
                ok = name in basenames
            if not ok:
                line = text.count("\n", 0, m.start()) + 1
                missing.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert not missing, "documents that are not in the project:\n" + "\n".join(missing)


def test_ci_runs_the_linters_then_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    test_section = readme.split("## Test\n", 1)[1]
    command = re.search(r"```\n(.+)\n```", test_section)
    assert command is not None, "README.md's Test section shows no command"
    lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and line[0] != "#"]
    assert lines[-1] == command.group(1) == "python -m pytest -q"
    assert lines[-4:-1] == ["ruff check .", "ruff format --check .", "mypy"]
