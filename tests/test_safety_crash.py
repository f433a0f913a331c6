"""Runs killed with SIGKILL while the gallery rates, and a property: no sequence of run,
kill, emptied database, deleted image, user's file, resume and repair ever deletes or
changes a file the store did not write (issue 9).

Both start processes (real ``sdp run`` processes, or forks of this one killed at an
exact step of the run), so the module is ``slow``.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stable_discovery.cli.main import main
from stable_discovery.gallery.server import GalleryServer, make_server
from stable_discovery.run.pngmeta import read_metadata

TEMPLATE = """\
animal = cat | dog | fox | owl
colour = red | green | blue
prompt = a <colour> <animal>
@steps = 10 | 20
@size = 64x64
@count = 400
"""
COUNT = 400


def start_run(tmpl: Path, ws: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stable_discovery",
            "run",
            str(tmpl),
            "--backend",
            "dummy",
            "--batch",
            "4",
            "--name",
            "zoo",
            "--workspace",
            str(ws),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


class Rater(threading.Thread):
    """Rates random done images through the gallery's API as fast as it can, and keeps
    the last rating the gallery confirmed for each image."""

    def __init__(self, port: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.rng = random.Random(seed)
        self.confirmed: dict[int, tuple[bool, int | None]] = {}
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            code, page = request(self.port, "GET", "/api/samples?experiment=zoo&limit=1000")
            if code != 200 or not page["items"]:
                time.sleep(0.01)
                continue
            for _ in range(20):
                index = self.rng.choice(page["items"])["index"]
                favourite = self.rng.random() < 0.5
                stars = self.rng.choice([None, 1, 2, 3, 4, 5])
                body = {"experiment": "zoo", "index": index, "favourite": favourite, "stars": stars}
                code, data = request(self.port, "POST", "/api/rate", body)
                self.sent += 1
                if code == 200:
                    assert data["rating"]["favourite"] == favourite and data["rating"]["stars"] == stars
                    self.confirmed[index] = (favourite, stars)


def test_killed_runs_while_the_gallery_rates_lose_nothing(tmp_path: Path) -> None:
    tmpl = tmp_path / "zoo.sdp"
    tmpl.write_text(TEMPLATE)
    ws = tmp_path / "ws"
    rng = random.Random(9)
    proc = start_run(tmpl, ws)
    deadline = time.monotonic() + 60
    while not (ws / "zoo").exists() or len(list((ws / "zoo").glob("*.png"))) < 8:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    server: GalleryServer = make_server(ws, "127.0.0.1", 0, log=lambda line: None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    rater = Rater(server.port, 10)
    rater.start()
    kills = 0
    try:
        for _attempt in range(4):
            if proc.poll() is None:
                time.sleep(rng.uniform(0.05, 0.4))
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    kills += 1
            proc.wait()
            proc = start_run(tmpl, ws)
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        time.sleep(0.3)  # a few more ratings after the run
    finally:
        rater.stop.set()
        rater.join(30)
        server.shutdown()
        server.server_close()
    assert kills >= 1 and rater.sent > 50 and rater.confirmed
    db = sqlite3.connect(ws / "discovery.db")
    stored = {
        idx: (bool(fav), stars) for idx, fav, stars in db.execute("SELECT idx, favourite, stars FROM ratings")
    }
    rows = db.execute("SELECT idx, file FROM samples WHERE status = 'done' ORDER BY idx").fetchall()
    db.close()
    assert {i: stored.get(i) for i in rater.confirmed} == rater.confirmed  # every confirmed mark is kept
    assert [i for i, _f in rows] == list(range(COUNT))
    files = sorted(p.name for p in (ws / "zoo").iterdir() if not p.name.startswith("."))
    assert files == sorted(f for _i, f in rows)
    for _i, fname in rng.sample(rows, 10):
        assert read_metadata(ws / "zoo" / fname)[1]["index"] == int(fname[:5])


# ---------------------------------------------------------------------------------------
# the property


SMALL = """\
animal = cat | dog | fox
prompt = a <animal>
@size = 8x8
@count = 8
"""


def _png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buf, format="PNG")
    return buf.getvalue()


#: Files a user may have in an experiment's folder (names the store uses included).
USER_FILES = {
    "IMG_0001.png": _png("red"),
    "00003.png": _png("blue"),  # an image name of the experiment
    "00012.png": _png("green"),  # an image name beyond its count
    "00003.png.tmp": b"an old editor's backup",
    "00002.png.sdp-tmp": b"not the store's temporary name (no dot in front)",
    ".lock.bak": b"x",
    "notes.txt": b"my notes",
}

#: The steps of a run a forked child may be killed at (each counted where it happens).
CRASH_POINTS = 40


def _instrument(kill_at: int) -> None:
    """In a forked child: SIGKILL this process at the ``kill_at``-th step of the run."""
    from stable_discovery.run import files, runner
    from stable_discovery.store.database import Store

    steps = [0]
    counting = threading.Lock()  # images are written on the run's encoder threads too

    def step() -> None:
        with counting:
            steps[0] += 1
            if steps[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    def around(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def wrapped(*args: Any, **kw: Any) -> Any:
            step()
            result = original(*args, **kw)
            step()
            return result

        setattr(owner, name, wrapped)

    around(files, "stage_bytes")
    around(files, "publish")
    around(files, "sweep")
    around(files, "write_spec_file")
    around(runner, "sweep")
    around(runner, "write_spec_file")
    around(Store, "record_done")
    around(Store, "open_experiment")
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        step()

    os.replace = replace  # in the child only: each image renamed into place is a step


def _sdp(*argv: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(list(argv))


def _run_in_child(tmpl: Path, ws: Path, kill_at: int | None) -> int:
    """``sdp run`` in a fork of this process, killed at step ``kill_at`` (None: not
    killed); its exit status, or -9."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 70
        try:
            if kill_at is not None:
                _instrument(kill_at)
            code = _sdp(
                "run", str(tmpl), "--backend", "dummy", "--batch", "3", "--name", "p", "--workspace", str(ws)
            )
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def test_a_run_killed_at_any_step_resumes_to_exactly_its_images(small_template: Path, fresh: Any) -> None:
    """Every step of a first run (and of a resumed one) in turn: the resumed run ends
    with exactly the experiment's images, rows and files agreeing, and no temporary
    file left."""
    for kill_at in range(1, CRASH_POINTS + 1):
        ws: Path = fresh()
        assert _run_in_child(small_template, ws, kill_at) == -signal.SIGKILL
        assert _run_in_child(small_template, ws, kill_at + 7) in (0, -signal.SIGKILL)
        assert _run_in_child(small_template, ws, None) == 0, kill_at
        db = sqlite3.connect(ws / "discovery.db")
        rows = db.execute("SELECT file FROM samples WHERE status = 'done' ORDER BY idx").fetchall()
        db.close()
        folder = ws / "p"
        assert len(rows) == 8
        assert sorted(p.name for p in folder.glob("*.png")) == sorted(r[0] for r in rows), kill_at
        assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".png")) == [
            ".lock",
            ".sdp-experiment.json",
        ], kill_at


Op = tuple[Any, ...]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("run"), st.one_of(st.none(), st.integers(1, CRASH_POINTS))),
        st.tuples(st.just("empty-db")),
        st.tuples(st.just("delete-image"), st.integers(0, 7)),
        st.tuples(st.just("user-file"), st.sampled_from(sorted(USER_FILES))),
        st.tuples(st.just("repair")),
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture(scope="module")
def small_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmpl") / "p.sdp"
    path.write_text(SMALL)
    return path


@pytest.fixture
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    def make() -> Path:
        return tmp_path_factory.mktemp("ws") / "ws"

    yield make


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_no_sequence_deletes_or_changes_a_file_the_store_did_not_write(
    steps: list[Op], small_template: Path, fresh: Any
) -> None:
    ws: Path = fresh()
    folder = ws / "p"
    placed: dict[str, bytes] = {}
    for op in steps:
        _apply(op, small_template, ws, folder, placed)
        for name, data in placed.items():
            path = folder / name
            assert path.is_file() and path.read_bytes() == data, (op, name)
    # once the user's files are moved out, repair and a run give exactly the experiment
    for name in placed:
        (folder / name).unlink()
    if ws.exists():
        assert _sdp("repair", "--workspace", str(ws)) in (0, 1)
    assert _run_in_child(small_template, ws, None) == 0
    db = sqlite3.connect(ws / "discovery.db")
    rows = db.execute("SELECT file FROM samples WHERE status = 'done' ORDER BY idx").fetchall()
    db.close()
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(r[0] for r in rows)
    assert len(rows) == 8
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".sdp-tmp")]


def _apply(op: Op, tmpl: Path, ws: Path, folder: Path, placed: dict[str, bytes]) -> None:
    kind = op[0]
    if kind == "run":
        assert _run_in_child(tmpl, ws, op[1]) in (0, 1, 2, -signal.SIGKILL)
    elif kind == "empty-db" and (ws / "discovery.db").exists():
        (ws / "discovery.db").write_bytes(b"")
        for extra in ("discovery.db-wal", "discovery.db-shm"):
            (ws / extra).unlink(missing_ok=True)
    elif kind == "delete-image" and folder.is_dir():
        ours = sorted(p for p in folder.glob("*.png") if p.name not in placed)
        if ours:
            ours[op[1] % len(ours)].unlink()
    elif kind == "user-file":
        name = op[1]
        path = folder / name
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(USER_FILES[name])
            placed[name] = USER_FILES[name]
    elif kind == "repair" and ws.exists():
        assert _sdp("repair", "--workspace", str(ws)) in (0, 1, 2)
