"""``sdp export`` (a folder, a zip, CSV, JSON Lines: the images keep their metadata, the rows
match the store) and the workspace's clean-up: ``sdp rm`` to the trash, ``--restore``,
``--purge``, ``sdp mv``, ``sdp archive``; the store stays consistent throughout and
nothing outside the workspace is touched."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import pytest

from stable_discovery.cli.main import main
from stable_discovery.run.files import ExperimentLock
from stable_discovery.run.pngmeta import read_metadata
from stable_discovery.store.database import Store

TEMPLATE = """\
animal = a cat | a dog | a fox
style = oil painting | watercolour
prompt = <animal>[, <style>], in the snow
@steps = 20 | 30
@size = 64x64
@count = 24
@seed = 9
"""
FAVOURITES = [1, 5, 8, 13, 21]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    template = root / "pets.sdp"
    template.write_text(TEMPLATE)
    ws = root / "ws"
    assert main(["run", str(template), "--backend", "dummy", "--workspace", str(ws)]) == 0
    assert main(["fav", "pets", *map(str, FAVOURITES), "--workspace", str(ws)]) == 0
    assert main(["rate", "pets", "5", "4", "--workspace", str(ws)]) == 0
    assert main(["rate", "pets", "6", "5", "--workspace", str(ws)]) == 0
    assert main(["reject", "pets", "13", "--workspace", str(ws)]) == 0
    other = root / "trees.sdp"
    other.write_text("prompt = a tree | a bush\n@size = 64x64\n@count = 4\n")
    assert main(["run", str(other), "--backend", "dummy", "--workspace", str(ws)]) == 0
    return ws


@pytest.fixture
def ws(generated: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(generated, copy)
    return copy


def sdp(ws: Path, *args: str) -> int:
    return main([*args, "--workspace", str(ws)])


def stored(ws: Path, name: str = "pets") -> dict[int, dict[str, Any]]:
    with Store(ws) as store:
        return {r["index"]: r for r in store.records(store.require(name))}


def snapshot(ws: Path) -> dict[str, Any]:
    """Every row of every table but the migrations, and every file of the workspace."""
    db = sqlite3.connect(ws / "discovery.db")
    try:
        rows = {
            table: sorted(map(repr, db.execute(f"SELECT * FROM {table}").fetchall()))
            for table in ("experiments", "samples", "choices", "ratings")
        }
    finally:
        db.close()
    files = {
        str(p.relative_to(ws)): p.read_bytes()
        for p in sorted(ws.rglob("*"))
        if p.is_file() and not p.name.startswith("discovery.db") and ".thumbs" not in p.parts
    }
    return {"rows": rows, "files": files}


# ---------------------------------------------------------------------------------------
# export


def _same_record(row: dict[str, Any], record: dict[str, Any]) -> None:
    keys = ("experiment", "index", "prompt", "negative", "settings", "seed", "trace", "file", "rating")
    assert {k: row[k] for k in keys} == {k: record[k] for k in keys}


def test_export_favourites_to_a_folder_round_trips(ws: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "favs"
    assert sdp(ws, "export", "pets", "--favourites", "-o", str(out)) == 0
    assert "exported 4 images of pets (favourites)" in capsys.readouterr().err
    expected = [i for i in FAVOURITES if i != 13]  # 13 is rejected: left out
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in expected] + ["metadata.jsonl"]
    records = stored(ws)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == expected
    for row in rows:
        _same_record(row, records[row["index"]])
        image = out / row["file_name"]
        assert image.read_bytes() == (ws / "pets" / row["file_name"]).read_bytes()
        parameters, own = read_metadata(image)  # the PNG chunks came along
        assert parameters is not None and parameters.startswith(row["prompt"] + "\n")
        assert own is not None and (own["index"], own["trace"], own["seed"]) == (
            row["index"],
            row["trace"],
            row["seed"],
        )
    # a folder that is not empty is refused, then written into with --force
    assert sdp(ws, "export", "pets", "--favourites", "-o", str(out)) == 2
    assert "--force" in capsys.readouterr().err
    assert sdp(ws, "export", "pets", "--min-stars", "5", "-o", str(out), "--force") == 0


def test_export_zip_csv_and_jsonl_match_the_store(ws: Path, tmp_path: Path) -> None:
    records = stored(ws)
    assert sdp(ws, "export", "pets", "--include-rejected", "--favourites", "-o", str(tmp_path / "f.zip")) == 0
    with zipfile.ZipFile(tmp_path / "f.zip") as archive:
        assert archive.namelist() == [f"{i:05d}.png" for i in FAVOURITES] + ["metadata.jsonl"]
        for i in FAVOURITES:
            assert archive.read(f"{i:05d}.png") == (ws / "pets" / f"{i:05d}.png").read_bytes()
    assert sdp(ws, "export", "pets", "-o", str(tmp_path / "all.jsonl")) == 0
    rows = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [i for i in range(24) if i != 13]
    for row in rows:
        _same_record(row, records[row["index"]])
        assert Path(row["path"]) == (ws / "pets" / row["file"]).resolve()
    assert sdp(ws, "export", "pets", "--min-stars", "4", "-o", str(tmp_path / "stars.csv")) == 0
    with open(tmp_path / "stars.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["index"]) for r in table] == [5, 6]
    for row in table:
        record = records[int(row["index"])]
        assert row["prompt"] == record["prompt"] and row["seed"] == str(record["seed"])
        assert (row["favourite"], row["stars"], row["rejected"]) == (
            str(int(record["rating"]["favourite"])),
            str(record["rating"]["stars"]),
            "0",
        )
        assert row["setting.steps"] == str(record["settings"]["steps"])
        for name in ("animal", "style", "steps"):
            assert row[f"trace.{name}"] == record["trace"].get(name, {}).get("text", "")
    assert sdp(ws, "export", "pets", "-o", str(tmp_path / "stars.csv")) == 2  # never overwritten


def test_export_filters_by_slot_values_and_words(ws: Path, tmp_path: Path, capsys: Any) -> None:
    records = stored(ws)
    out = tmp_path / "f.jsonl"
    assert (
        sdp(ws, "export", "pets", "--filter", "animal=a dog", "--filter", "style=(absent)", "-o", str(out))
        == 0
    )
    got = [json.loads(line)["index"] for line in out.read_text().splitlines()]
    want = [
        i
        for i, r in records.items()
        if r["trace"]["animal"]["text"] == "a dog" and "style" not in r["trace"] and i != 13
    ]
    assert got == want and got
    out.unlink()
    picks = ["--filter", "@steps=30", "--filter", "animal=#0", "--filter", "animal=A FOX"]
    assert sdp(ws, "export", "pets", *picks, "--search", "snow", "-o", str(out)) == 0
    got = [json.loads(line)["index"] for line in out.read_text().splitlines()]
    assert got == [
        i
        for i, r in records.items()
        if r["trace"]["steps"]["text"] == "30" and r["trace"]["animal"]["index"] in (0, 2) and i != 13
    ]
    capsys.readouterr()
    for bad, message in (
        ("anmal=a dog", "did you mean 'animal'"),
        ("animal=a dig", "did you mean 'a dog'"),
        ("animal", "slot=value"),
        ("animal=(absent)", "never absent"),
    ):
        assert sdp(ws, "export", "pets", "--filter", bad, "-o", str(tmp_path / "x.csv")) == 2
        assert message in capsys.readouterr().err.lower(), bad
    assert not (tmp_path / "x.csv").exists()


def test_export_reports_missing_images(ws: Path, tmp_path: Path, capsys: Any) -> None:
    (ws / "pets" / "00005.png").unlink()
    assert sdp(ws, "export", "pets", "--favourites", "-o", str(tmp_path / "f.zip")) == 1
    assert "00005.png" in capsys.readouterr().err
    with zipfile.ZipFile(tmp_path / "f.zip") as archive:
        assert "00005.png" not in archive.namelist() and "00008.png" in archive.namelist()


def test_export_refuses_an_output_suffix_it_does_not_write(ws: Path, tmp_path: Path, capsys: Any) -> None:
    assert sdp(ws, "export", "pets", "-o", str(tmp_path / "out.json")) == 2
    assert "FILE.jsonl" in capsys.readouterr().err and not (tmp_path / "out.json").exists()
    (tmp_path / "shots.v2").mkdir()  # a folder that exists is a folder, whatever its name
    assert sdp(ws, "export", "pets", "--favourites", "-o", str(tmp_path / "shots.v2")) == 0
    assert list((tmp_path / "shots.v2").glob("*.png"))


# ---------------------------------------------------------------------------------------
# rm, the trash, mv, archive


def test_rm_to_the_trash_restore_and_purge(ws: Path, tmp_path: Path, capsys: Any) -> None:
    before = snapshot(ws)
    records = stored(ws)
    outside = tmp_path / "outside.txt"
    outside.write_text("not the workspace's")
    # without a terminal and without --yes nothing happens
    assert sdp(ws, "rm", "pets") == 2
    assert "--yes" in capsys.readouterr().err and snapshot(ws) == before
    assert sdp(ws, "rm", "pets", "--yes") == 0
    assert not (ws / "pets").exists()
    with Store(ws) as store:
        assert store.get("pets") is None and [e.name for e in store.experiments()] == ["trees"]
        for table in ("samples", "choices", "ratings"):
            assert (
                store.db.execute(f"SELECT COUNT(*) FROM {table} WHERE experiment_id = 1").fetchone()[0] == 0
            )
    (entry,) = (ws / ".trash").iterdir()
    assert sorted(p.name for p in (entry / "images").glob("*.png")) == [f"{i:05d}.png" for i in range(24)]
    capsys.readouterr()
    assert sdp(ws, "rm", "--list") == 0
    assert "pets" in capsys.readouterr().out
    # restore: everything back as it was (a new id), marks included
    assert sdp(ws, "rm", "--restore", "pets") == 0
    after = snapshot(ws)
    assert after["files"] == before["files"]
    assert {t: len(r) for t, r in after["rows"].items()} == {t: len(r) for t, r in before["rows"].items()}
    assert stored(ws) == records
    assert sdp(ws, "stats", "pets") == 0
    # remove again and purge: gone for good, the other experiment and outside untouched
    assert sdp(ws, "rm", "pets", "-y") == 0
    assert sdp(ws, "rm", "--purge") == 2  # asks first
    assert (ws / ".trash").exists()
    assert sdp(ws, "rm", "--purge", "--yes") == 0
    assert not (ws / ".trash").exists()
    assert sorted(p.name for p in ws.iterdir() if not p.name.startswith("discovery.db")) == ["trees"]
    assert outside.read_text() == "not the workspace's"
    assert sdp(ws, "rm", "--restore", "pets") == 2
    assert sdp(ws, "rm", "nope", "-y") == 2


def test_purge_never_deletes_a_file_sdp_did_not_write(ws: Path, capsys: Any) -> None:
    notes = ws / "pets" / "notes.txt"
    notes.write_text("the user's own")
    extra = ws / "pets" / "IMG_0001.png"
    extra.write_bytes(b"not ours")
    assert sdp(ws, "rm", "pets", "-y") == 0
    capsys.readouterr()
    assert sdp(ws, "rm", "--purge", "--yes") == 0
    out = capsys.readouterr().out
    assert "kept 2 files that sdp did not write" in out and "notes.txt" in out
    (entry,) = (ws / ".trash").iterdir()
    assert sorted(p.name for p in (entry / "images").iterdir()) == ["IMG_0001.png", "notes.txt"]
    assert (entry / "images" / "notes.txt").read_text() == "the user's own"
    assert (entry / "images" / "IMG_0001.png").read_bytes() == b"not ours"
    # the entry stays listed until the user moves the files out; then it goes
    assert sdp(ws, "rm", "--list") == 0 and "pets" in capsys.readouterr().out
    for path in (entry / "images").iterdir():
        path.rename(ws.parent / path.name)
    assert sdp(ws, "rm", "--purge", "--yes") == 0
    assert not (ws / ".trash").exists()


def test_rm_keeps_marks_across_the_trash(ws: Path) -> None:
    records = stored(ws)
    assert sdp(ws, "rm", "pets", "-y") == 0
    assert sdp(ws, "rm", "--restore", "pets", "--as", "pets-again") == 0
    again = stored(ws, "pets-again")
    assert {i: (r["rating"], r["trace"], r["prompt"]) for i, r in again.items()} == {
        i: (r["rating"], r["trace"], r["prompt"]) for i, r in records.items()
    }


def test_rm_and_mv_refuse_an_experiment_being_run(ws: Path, capsys: Any) -> None:
    before = snapshot(ws)
    with ExperimentLock(ws / "pets", "pets"):
        assert sdp(ws, "rm", "pets", "--yes") == 1
        assert "being run" in capsys.readouterr().err
        assert sdp(ws, "mv", "pets", "cats") == 1
    assert snapshot(ws) == before


def test_mv_renames_rows_and_folder_together(ws: Path, capsys: Any) -> None:
    records = stored(ws)
    assert sdp(ws, "mv", "pets", "pets-2024") == 0
    assert not (ws / "pets").exists() and (ws / "pets-2024" / "00000.png").is_file()
    moved = stored(ws, "pets-2024")
    assert {i: {**r, "experiment": "pets"} for i, r in moved.items()} == records
    assert sdp(ws, "mv", "pets-2024", "trees") == 2  # taken
    assert sdp(ws, "mv", "nope", "x") == 2
    assert sdp(ws, "mv", "pets-2024", "bad/name") == 2
    (ws / "stray").mkdir()
    assert sdp(ws, "mv", "pets-2024", "stray") == 2  # a folder that is not an experiment
    assert "already exists" in capsys.readouterr().err
    assert stored(ws, "pets-2024") == moved


def test_archive_and_runs(ws: Path, capsys: Any) -> None:
    assert sdp(ws, "archive", "pets") == 0
    with Store(ws) as store:
        assert store.require("pets").archived and not store.require("trees").archived
    capsys.readouterr()
    assert sdp(ws, "runs", "--json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["name"]: r["archived"] for r in rows} == {"pets": True, "trees": False}
    assert sdp(ws, "runs") == 0
    assert "pets (archived)" in capsys.readouterr().out
    assert sdp(ws, "archive", "pets", "--off") == 0
    with Store(ws) as store:
        assert not store.require("pets").archived
