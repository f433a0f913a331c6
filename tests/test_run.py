"""sdp run end to end with the dummy backend: files, metadata, store, resume, refusals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from stable_discovery.backends.dummy import DummyBackend
from stable_discovery.cli.main import main
from stable_discovery.errors import UsageError
from stable_discovery.language.program import load
from stable_discovery.plugins import get_sampler
from stable_discovery.run.files import ExperimentLock
from stable_discovery.run.pngmeta import parse_parameters, read_metadata
from stable_discovery.run.runner import RunOptions, RunParts, run_experiment
from stable_discovery.store.database import Store, StoreError

TEMPLATE = """\
subject = a cat | a dog
style = oil painting | watercolour
prompt = <subject>[, <style>]
negative = blurry, lowres
@steps = 20 | 30
@size = 64x64
@count = 12
@seed = 7
"""


@pytest.fixture
def tmpl(tmp_path: Path) -> Path:
    path = tmp_path / "pets.sdp"
    path.write_text(TEMPLATE)
    return path


def sdp_run(tmp_path: Path, *argv: str) -> int:
    return main(["run", *argv, "--workspace", str(tmp_path / "ws")])


def rows(ws: Path, name: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(ws / "discovery.db")
    db.row_factory = sqlite3.Row
    return db.execute(
        "SELECT s.* FROM samples s JOIN experiments e ON e.id = s.experiment_id "
        "WHERE e.name = ? ORDER BY idx",
        (name,),
    ).fetchall()


def test_run_writes_pngs_with_metadata_and_rows(tmpl, tmp_path, capsys) -> None:
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy", "--batch", "4") == 0
    ws = tmp_path / "ws"
    stored = rows(ws, "pets")
    assert [r["idx"] for r in stored] == list(range(12))
    files = sorted(p.name for p in (ws / "pets").glob("*.png"))
    assert files == sorted(r["file"] for r in stored)
    assert not list((ws / "pets").glob("*.tmp"))
    program = load(tmpl)
    expected = list(get_sampler("random").samples(program, 0, 12, 7))
    for row, sample in zip(stored, expected, strict=False):
        assert row["status"] == "done" and row["prompt"] == sample.prompt and row["seed"] == sample.seed
        path = ws / "pets" / row["file"]
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == (64, 64)
        params, record = read_metadata(path)
        parsed = parse_parameters(params)
        assert parsed["Prompt"] == sample.prompt
        assert parsed["Negative prompt"] == "blurry, lowres"
        assert parsed["Steps"] == str(sample.settings["steps"])
        assert parsed["Sampler"] == "DDIM" and parsed["CFG scale"] == "7.5"
        assert parsed["Seed"] == str(sample.seed) and parsed["Size"] == "64x64"
        assert parsed["Model"].startswith("dummy")
        assert record["experiment"] == "pets" and record["index"] == row["idx"]
        assert record["trace"] == {k: {"index": c.index, "text": c.text} for k, c in sample.trace.items()}


def test_a1111_quotes_values_with_commas(tmp_path) -> None:
    from stable_discovery.run.pngmeta import a1111_parameters

    text = a1111_parameters(
        "p",
        "",
        {"steps": 5, "scheduler": "euler_a", "guidance": 7.0, "width": 64, "height": 64},
        3,
        "my, model: v2",
    )
    parsed = parse_parameters(text)
    assert parsed["Model"] == "my, model: v2" and parsed["Sampler"] == "Euler a"
    assert parsed["CFG scale"] == "7" and "Negative prompt" not in text


def test_resume_generates_only_what_is_missing(tmpl, tmp_path, capsys) -> None:
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy") == 0
    ws = tmp_path / "ws"
    victim = ws / "pets" / "00005.png"
    before = {p.name: p.stat().st_mtime_ns for p in (ws / "pets").glob("*.png")}
    db = sqlite3.connect(ws / "discovery.db")
    db.execute("DELETE FROM samples WHERE idx IN (3, 5)")
    db.commit()
    capsys.readouterr()
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy") == 0
    err = capsys.readouterr().err
    assert "10 of 12 done" in err and "(2 new" in err
    assert victim.exists()
    after = {p.name: p.stat().st_mtime_ns for p in (ws / "pets").glob("*.png")}
    unchanged = [n for n in before if n not in ("00003.png", "00005.png")]
    assert all(before[n] == after[n] for n in unchanged)


@pytest.mark.parametrize(
    "change, words",
    [
        (["--seed", "8"], "seed 7 → 8"),
        (["--count", "5"], "count 12 → 5"),
        (["--sampler", "shuffle"], "sampler random → shuffle"),
        (["--set", "steps=10"], "overrides"),
    ],
)
def test_changed_experiment_is_refused(tmpl, tmp_path, capsys, change, words) -> None:
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy") == 0
    capsys.readouterr()
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy", *change) == 2
    err = capsys.readouterr().err
    assert words in err and "--name pets-2" in err and "Nothing was changed" in err


def test_changed_template_is_refused_and_nothing_overwritten(tmpl, tmp_path, capsys) -> None:
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy") == 0
    image = (tmp_path / "ws" / "pets" / "00000.png").read_bytes()
    tmpl.write_text(TEMPLATE.replace("a dog", "a fox"))
    capsys.readouterr()
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy") == 2
    err = capsys.readouterr().err
    assert "template changed at line 1" in err and "a fox" in err and "--name pets-2" in err
    assert (tmp_path / "ws" / "pets" / "00000.png").read_bytes() == image
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy", "--name", "pets-2") == 0
    assert main(["runs", "--workspace", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "pets " in out and "pets-2" in out and "12/12" in out


def test_second_process_is_refused_while_locked(tmpl, tmp_path, capsys) -> None:
    ws = tmp_path / "ws"
    (ws / "pets").mkdir(parents=True)
    lock = ExperimentLock(ws / "pets", "pets")
    try:
        assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy") == 1
        err = capsys.readouterr().err
        assert "being run by another process" in err and str(os.getpid()) in err
    finally:
        lock.release()
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy") == 0


def test_leftovers_of_a_crash_are_swept_and_nothing_else(tmpl, tmp_path) -> None:
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy", "--count", "4", "--name", "p") == 0
    folder = tmp_path / "ws" / "p"
    (folder / ".00002.png.sdp-tmp").write_bytes(b"half")  # the store's own temporary name
    # not the store's: a file that looks like an old temporary one, and an image it never wrote
    (folder / "00002.png.tmp").write_bytes(b"half")
    (folder / "00099.png").write_bytes(b"orphan")
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy", "--count", "4", "--name", "p") == 0
    assert sorted(
        p.name for p in folder.iterdir() if p.name not in (".lock", ".sdp-experiment.json")
    ) == sorted([*(f"{i:05d}.png" for i in range(4)), "00002.png.tmp", "00099.png"])


def test_ctrl_c_stops_after_the_current_batch(tmpl, tmp_path) -> None:
    class Interrupting(DummyBackend):
        calls = 0

        def generate(self, batch):
            Interrupting.calls += 1
            if Interrupting.calls == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return super().generate(batch)

    with Store(tmp_path / "ws") as store:
        result = run_experiment(
            store,
            load(tmpl),
            str(tmpl),
            RunOptions("pets", backend="dummy", batch=3),
            RunParts(lambda **o: Interrupting(), get_sampler("random")),
        )
    assert result.interrupted and result.done == 6 and result.generated == 6
    assert len(list((tmp_path / "ws" / "pets").glob("*.png"))) == 6
    with Store(tmp_path / "ws") as store:
        again = run_experiment(
            store,
            load(tmpl),
            str(tmpl),
            RunOptions("pets", backend="dummy", batch=3),
            RunParts(lambda **o: DummyBackend(), get_sampler("random")),
        )
    assert not again.interrupted and again.done == 12 and again.generated == 6


def test_ctrl_c_from_the_cli_prints_how_to_resume(tmpl, tmp_path, capsys, monkeypatch) -> None:
    calls = {"n": 0}
    original = DummyBackend.generate

    def generate(self, batch):
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, batch)

    monkeypatch.setattr(DummyBackend, "generate", generate)
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy", "--batch", "4") == 130
    err = capsys.readouterr().err
    assert "stopped: 4 of 12 done" in err and "sdp run" in err and "pets" in err


def test_show_prints_the_record_and_regenerates(tmpl, tmp_path, capsys) -> None:
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy") == 0
    capsys.readouterr()
    ws = ["--workspace", str(tmp_path / "ws")]
    assert main(["show", "pets", "3", "--json", *ws]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["index"] == 3 and rec["seed"] == 3 and rec["file"] == "00003.png"
    assert set(rec) >= {"prompt", "negative", "settings", "trace", "seconds", "batch_size", "path"}
    assert main(["show", "pets", "3", "--regen", *ws]) == 0
    assert "identical to the stored image" in capsys.readouterr().out
    Path(rec["path"]).write_bytes(_other_png(tmp_path))
    assert main(["show", "pets", "3", "--regen", *ws]) == 1
    assert "DIFFERS" in capsys.readouterr().out
    assert main(["show", "pets", "99", *ws]) == 2
    assert main(["show", "pest", "1", *ws]) == 2
    assert "did you mean 'pets'" in capsys.readouterr().err


def _other_png(tmp_path: Path) -> bytes:
    path = tmp_path / "other.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    return path.read_bytes()


def test_count_is_required_for_random_sampling(tmp_path, capsys) -> None:
    path = tmp_path / "t.sdp"
    path.write_text("prompt = a {cat|dog}\n@size = 64x64\n")
    assert sdp_run(tmp_path, str(path), "--backend", "dummy") == 2
    assert "--count N or @count" in capsys.readouterr().err
    assert sdp_run(tmp_path, str(path), "--backend", "dummy", "--sampler", "combinatorial") == 0
    assert len(list((tmp_path / "ws" / "t").glob("*.png"))) == 2


def test_store_refuses_a_broken_database(tmp_path) -> None:
    (tmp_path / "discovery.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store(tmp_path)


def test_bad_names_and_overrides(tmpl, tmp_path, capsys) -> None:
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy", "--name", "../x") == 2
    assert "bad experiment name" in capsys.readouterr().err
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy", "--set", "steps=abc") == 2
    assert "--set steps" in capsys.readouterr().err
    assert sdp_run(tmp_path, str(tmpl), "--backend", "nope") == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err
    with pytest.raises(UsageError):
        from stable_discovery.store.database import check_name

        check_name("")


def test_a_name_with_nothing_made_takes_a_new_spec(tmpl, tmp_path, capsys) -> None:
    from stable_discovery.backends.base import BackendError

    class Unreachable(DummyBackend):
        def prepare(self, models):
            raise BackendError("cannot load model 'x': offline")

    with Store(tmp_path / "ws") as store:
        with pytest.raises(BackendError):
            run_experiment(
                store,
                load(tmpl),
                str(tmpl),
                RunOptions("pets", backend="other"),
                RunParts(lambda **o: Unreachable(), get_sampler("random")),
            )
        assert store.require("pets").done == 0
    # nothing was made under the first spec, so the same name may change backend
    assert sdp_run(tmp_path, str(tmpl), "--backend", "dummy") == 0
    assert "12 of 12" in capsys.readouterr().err
