"""The grammar corpus: grammar/corpus/valid/*.sdp pass `sdp check`; each file in
grammar/corpus/invalid/ has one mistake, and `sdp check` reports it as
FILE:LINE:COL: error: … (the text in its sibling .expected file) with exit status 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stable_discovery.cli.main import main
from tests.helpers import REPO

CORPUS = REPO / "grammar" / "corpus"
VALID = sorted((CORPUS / "valid").glob("*.sdp"))
INVALID = sorted((CORPUS / "invalid").glob("*.sdp"))

LOCATION = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.+)$")


def test_the_corpus_is_large_enough() -> None:
    assert len(VALID) >= 15
    assert len(INVALID) >= 15


def test_every_invalid_file_has_its_expected_text() -> None:
    sdp = {p.stem for p in INVALID}
    expected = {p.stem for p in (CORPUS / "invalid").glob("*.expected")}
    assert sdp == expected


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_file_passes_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.splitlines()[0] == f"{path}: ok"
    assert err == ""


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_file_count_matches_its_expansion(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["count", str(path)]) == 0
    count = int(capsys.readouterr().out.split()[-1])
    limit = 5000
    assert main(["expand", str(path), "--limit", str(limit)]) == 0
    lines = capsys.readouterr().out.split("\n")[:-1]
    assert len(lines) == min(count, limit)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_file_is_reported_where_the_mistake_is(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").strip()
    assert expected, f"{path.with_suffix('.expected')} is empty"
    status = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert "Traceback" not in err
    first, *rest = err.splitlines()
    m = LOCATION.match(first)
    assert m is not None, f"no FILE:LINE:COL: error: in {first!r}"
    # the mistake is in the template itself, or in one of the wildcard files it uses
    where = Path(m.group("file"))
    assert where == path or where.is_relative_to(path.parent / "wildcards"), where
    assert int(m.group("line")) >= 1 and int(m.group("col")) >= 1
    assert expected in first, f"{expected!r} not in {first!r}"
    # the offending line is shown with a caret under the place
    assert len(rest) >= 2 and rest[1].strip() == "^", err
