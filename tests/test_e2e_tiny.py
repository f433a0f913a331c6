"""A real experiment end to end through the real diffusers path, with the tiny model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from PIL import Image

from stable_discovery.cli.main import main
from stable_discovery.run.pngmeta import parse_parameters, read_metadata

TEMPLATE = """\
subject = a red fox | a grey heron
style = oil painting | ink drawing
prompt = <subject>[, <style>]
negative = blurry
@steps = 3 | 4
@size = 64x64
@count = 6
@seed = 5
"""


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("e2e")
    tmpl = tmp / "tiny.sdp"
    tmpl.write_text(TEMPLATE)
    ws = tmp / "ws"
    assert main(["run", str(tmpl), "--model", "tiny", "--batch", "4", "--workspace", str(ws)]) == 0
    return tmpl, ws


def test_images_metadata_and_rows_agree(experiment) -> None:
    _tmpl, ws = experiment
    db = sqlite3.connect(ws / "discovery.db")
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM samples ORDER BY idx").fetchall()
    assert [r["idx"] for r in rows] == list(range(6))
    files = sorted(p.name for p in (ws / "tiny").glob("*.png"))
    assert files == [r["file"] for r in rows]
    for r in rows:
        path = ws / "tiny" / r["file"]
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
            assert len({im.convert("RGB").tobytes()[i : i + 3] for i in range(0, 64 * 64 * 3, 3)}) > 50, (
                "a real image, not a flat fill"
            )
        params, record = read_metadata(path)
        parsed = parse_parameters(params)
        settings = json.loads(r["settings"])
        assert parsed["Prompt"] == r["prompt"] and parsed["Negative prompt"] == "blurry"
        assert parsed["Steps"] == str(settings["steps"]) and parsed["Seed"] == str(r["seed"])
        assert parsed["Sampler"] == "DDIM" and parsed["Size"] == "64x64"
        assert "tiny" in parsed["Model"]
        assert settings["model"] == "tiny"
        assert record["index"] == r["idx"] and record["backend"] == "diffusers"


def test_regenerating_an_image_matches(experiment, capsys) -> None:
    _tmpl, ws = experiment
    capsys.readouterr()
    assert main(["show", "tiny", "2", "--regen", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert "regenerated: identical" in out or "regenerated: matches" in out


def test_resume_does_nothing_when_done(experiment, capsys) -> None:
    tmpl, ws = experiment
    capsys.readouterr()
    assert main(["run", str(tmpl), "--model", "tiny", "--batch", "4", "--workspace", str(ws)]) == 0
    assert "6 of 6 done" in capsys.readouterr().err
