"""The store, the run and the gallery under faults and bad input (issue 9): one test (or a
few) per finding, written as its reproduction says.

Disk-full and read-only file systems are small tmpfs mounts, which needs root; without
it those tests are skipped and say why.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stable_discovery.backends.dummy import DummyBackend
from stable_discovery.cli.main import main
from stable_discovery.gallery.connections import Deadlines
from stable_discovery.gallery.server import GalleryServer, make_server
from stable_discovery.language.program import load
from stable_discovery.plugins import get_sampler
from stable_discovery.run.runner import RunOptions, RunParts, run_experiment
from stable_discovery.store.database import Store
from stable_discovery.store.faults import StoreFault

TEMPLATE = """\
animal = a cat | a dog | a fox
style = oil painting | watercolour
prompt = <animal>, <style>
@steps = 20 | 30
@size = 64x64
@count = 20
@seed = 3
"""


@pytest.fixture
def tmpl(tmp_path: Path) -> Path:
    path = tmp_path / "T.sdp"
    path.write_text(TEMPLATE)
    return path


def sdp(*argv: str) -> tuple[int, str, str]:
    """``sdp ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse refuses an argument
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def run(tmpl: Path, ws: Path, *extra: str) -> tuple[int, str, str]:
    return sdp("run", str(tmpl), "--backend", "dummy", "--workspace", str(ws), *extra)


def no_bug(err: str) -> None:
    assert "internal error" not in err and "is a bug" not in err and "Traceback" not in err, err


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its content, but SQLite's
    shared-memory index and write-ahead log (a reader makes them for a WAL database;
    the log must be empty)."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.name.endswith("-shm"):
            continue
        if p.name.endswith("-wal"):
            assert p.stat().st_size == 0, f"{p} holds writes"
            continue
        if p.is_file():
            files[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def images(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """A factory of small tmpfs mounts (``tmpfs("2m")``), unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a full or read-only disk is a small tmpfs mount here, which needs root")
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True, capture_output=True)


@pytest.fixture
def served() -> Iterator[Callable[..., GalleryServer]]:
    """A factory of running gallery servers (``make_server`` arguments), shut down after."""
    servers: list[tuple[GalleryServer, threading.Thread]] = []

    def start(workspace: Path, host: str = "127.0.0.1", **kw: Any) -> GalleryServer:
        srv = make_server(workspace, host, 0, log=lambda line: None, **kw)
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((srv, thread))
        return srv

    yield start
    for srv, thread in servers:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def call(
    srv: GalleryServer, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.putrequest(method, path, skip_host="Host" in hdrs, skip_accept_encoding=True)
        for key, value in hdrs.items():
            conn.putheader(key, value)
        if data is not None:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def ratings(ws: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(ws / "discovery.db")
    try:
        return db.execute(
            "SELECT experiment_id, idx, favourite, stars, rejected FROM ratings ORDER BY 1, 2"
        ).fetchall()
    finally:
        db.close()


# ---------------------------------------------------------------------------------------
# 1. the store owns only what it wrote


def test_1_a_run_never_deletes_a_file_it_did_not_write(tmpl: Path, tmp_path: Path) -> None:
    # mkdir -p pics/holiday && cp any.png pics/holiday/IMG_0001.png
    # sdp run T --backend dummy --count 2 --name holiday --workspace pics
    pics = tmp_path / "pics"
    (pics / "holiday").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(pics / "holiday" / "IMG_0001.png")
    before = snapshot(pics)
    code, _out, err = run(tmpl, pics, "--count", "2", "--name", "holiday")
    assert code == 2, err
    assert "IMG_0001.png" in err and "Nothing was changed" in err
    assert snapshot(pics) == before  # not even a lock file or a database was left
    # another name is fine, and leaves the user's folder alone
    assert run(tmpl, pics, "--count", "2", "--name", "trip")[0] == 0
    assert (pics / "holiday" / "IMG_0001.png").read_bytes() == (
        tmp_path / "pics/holiday/IMG_0001.png"
    ).read_bytes()
    assert sorted(p.name for p in (pics / "holiday").iterdir()) == ["IMG_0001.png"]


def test_1_an_emptied_database_is_refused_and_rebuilt_from_the_images(tmpl: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run(tmpl, ws, "--name", "c")[0] == 0
    assert sdp("fav", "c", "3", "--workspace", str(ws))[0] == 0
    pictures = images(ws / "c")
    (ws / "discovery.db").write_bytes(b"")  # truncated to 0 bytes
    code, _out, err = run(tmpl, ws, "--name", "c")
    assert code == 1 and "sdp repair --workspace" in err and "c: 20 images" in err, err
    assert images(ws / "c") == pictures
    # and so is a database moved away
    (ws / "discovery.db").unlink()
    code, _out, err = run(tmpl, ws, "--name", "c")
    assert code == 1 and "sdp repair --workspace" in err, err
    assert not (ws / "discovery.db").exists() and images(ws / "c") == pictures
    # sdp repair rebuilds the store from the spec file and the images' records; the run resumes
    code, out, err = sdp("repair", "--workspace", str(ws))
    assert code == 0, err
    assert "c: added back from its folder" in out and "20 images given their rows" in out
    code, _out, err = run(tmpl, ws, "--name", "c")
    assert code == 0 and "done: 20 of 20 images (0 new" in err, err
    assert images(ws / "c") == pictures
    record = json.loads(sdp("show", "c", "7", "--json", "--workspace", str(ws))[1])
    assert record["prompt"] and record["trace"]["animal"]["text"] in ("a cat", "a dog", "a fox")


def test_1_a_database_moved_away_under_the_gallery_is_not_replaced(
    tmpl: Path, tmp_path: Path, served: Callable[..., GalleryServer]
) -> None:
    ws = tmp_path / "ws"
    assert run(tmpl, ws, "--name", "c")[0] == 0
    srv = served(ws)
    assert call(srv, "GET", "/api/experiments")[0] == 200
    os.replace(ws / "discovery.db", tmp_path / "moved.db")
    for path in ("/api/experiments", "/api/samples?experiment=c", "/api/record?experiment=c&index=1"):
        code, _h, body = call(srv, "GET", path)
        assert code == 503 and b"gone" in body, body
    assert call(srv, "POST", "/api/rate", {"experiment": "c", "index": 1, "favourite": True})[0] == 503
    assert not (ws / "discovery.db").exists()  # read-only requests never make a new store
    code, _out, err = run(tmpl, ws, "--name", "c")
    assert code == 1 and "sdp repair" in err
    assert len(images(ws / "c")) == 20
    os.replace(tmp_path / "moved.db", ws / "discovery.db")
    assert call(srv, "GET", "/api/experiments")[0] == 200


def test_1_a_file_under_an_image_name_that_the_store_did_not_write_is_never_overwritten(
    tmpl: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    assert run(tmpl, ws, "--name", "c", "--count", "6")[0] == 0
    db = sqlite3.connect(ws / "discovery.db")
    with db:
        db.execute("DELETE FROM choices WHERE idx = 4")
        db.execute("DELETE FROM samples WHERE idx = 4")
    db.close()
    (ws / "c" / "00004.png").unlink()
    Image.new("RGB", (8, 8), "blue").save(ws / "c" / "00004.png")  # the user's picture
    mine = (ws / "c" / "00004.png").read_bytes()
    code, _out, err = run(tmpl, ws, "--name", "c", "--count", "6")
    assert code == 2 and "00004.png" in err and "did not make" in err, err
    assert (ws / "c" / "00004.png").read_bytes() == mine
    os.replace(ws / "c" / "00004.png", tmp_path / "mine.png")
    assert run(tmpl, ws, "--name", "c", "--count", "6")[0] == 0
    assert len(images(ws / "c")) == 6 and (tmp_path / "mine.png").read_bytes() == mine


def test_1_an_image_of_an_earlier_version_killed_before_its_row_is_replaced(
    tmpl: Path, tmp_path: Path
) -> None:
    """Earlier versions renamed an image into place before committing its row: such a
    file carries this experiment's record for its index, so it is the store's own."""
    ws = tmp_path / "ws"
    assert run(tmpl, ws, "--name", "c", "--count", "6")[0] == 0
    ours = (ws / "c" / "00005.png").read_bytes()
    db = sqlite3.connect(ws / "discovery.db")
    with db:
        db.execute("DELETE FROM samples WHERE idx = 5")
    db.close()
    code, _out, err = run(tmpl, ws, "--name", "c", "--count", "6")
    assert code == 0 and "(1 new" in err, err
    assert (ws / "c" / "00005.png").read_bytes() == ours


# ---------------------------------------------------------------------------------------
# 2. lock first, then decide


def test_2_a_second_run_cannot_relabel_the_experiment_the_first_is_making(tmpl: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    loading = threading.Event()
    go_on = threading.Event()

    class SlowToLoad(DummyBackend):  # the first run's model takes a while to load
        def __init__(self, **kw: Any) -> None:
            loading.set()
            go_on.wait(10)
            super().__init__()

    program = load(tmpl)
    parts = RunParts(backend_factory=SlowToLoad, sampler=get_sampler("random"))
    result: list[Any] = []

    def first() -> None:
        with Store(ws) as store:
            options = RunOptions(name="race", backend="tiny-stand-in", count=6)
            result.append(run_experiment(store, program, str(tmpl), options, parts))

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert loading.wait(10)
        # sdp run T --backend dummy --count 50 --seed 5 --name race, while the first one loads
        code, _out, err = run(tmpl, ws, "--count", "50", "--seed", "5", "--name", "race")
        assert code == 1 and "being run by another process" in err, err
        with Store(ws, mode="read") as store:
            exp = store.require("race")
            assert (exp.backend, exp.count, exp.seed) == ("tiny-stand-in", 6, 3)
    finally:
        go_on.set()
        thread.join(20)
    assert result and result[0].done == 6
    with Store(ws, mode="read") as store:
        exp = store.require("race")
        assert (exp.backend, exp.count, exp.seed, exp.done) == ("tiny-stand-in", 6, 3, 6)


# ---------------------------------------------------------------------------------------
# 3. a full disk is the user's, not a bug


def test_3_a_full_disk_says_so_and_how_to_resume(tmpl: Path, tmpfs: Callable[[str], Path]) -> None:
    disk = tmpfs("2m")
    ws = disk / "ws"
    argv = ("--name", "big", "--count", "300", "--set", "size=128x128")
    code, _out, err = run(tmpl, ws, *argv)
    no_bug(err)
    assert code == 1, err
    assert "disk is full" in err and "resume with:" in err and "--name big" in err, err
    # nothing damaged: the store is sound, every row has its file and no file lacks a row
    db = sqlite3.connect(ws / "discovery.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    files = {r[0] for r in db.execute("SELECT file FROM samples WHERE status = 'done'")}
    db.close()
    assert files and {p.name for p in (ws / "big").glob("*.png")} == files
    # reading still works on the full disk, and a mark says why it cannot be saved
    code, out, err = sdp("runs", "--workspace", str(ws))
    assert code == 0 and f"{len(files)}/300" in out, err
    assert sdp("stats", "big", "--workspace", str(ws))[0] == 0
    code, _out, err = sdp("fav", "big", "0", "--workspace", str(ws))
    no_bug(err)
    assert code in (0, 1) and (code == 0 or "full" in err), err
    # with room again, the same command finishes the run
    remount(disk, "size=16m")
    code, _out, err = run(tmpl, ws, *argv)
    assert code == 0 and "done: 300 of 300" in err, err


# ---------------------------------------------------------------------------------------
# 4. sharing the gallery


@pytest.fixture
def small_ws(tmpl: Path, tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    assert run(tmpl, ws, "--name", "c")[0] == 0
    return ws


def test_4_a_shared_gallery_needs_its_token_and_a_host_of_this_machine(
    small_ws: Path, served: Callable[..., GalleryServer]
) -> None:
    srv = served(small_ws, "0.0.0.0", token="t" * 22)
    port = srv.port
    token = srv.access.token
    assert token == "t" * 22
    evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    # DNS rebinding: a page of evil.example gets nothing, token or not
    assert call(srv, "GET", f"/api/experiments?token={token}", headers=evil)[0] == 403
    body = {"experiment": "c", "index": 1, "favourite": True}
    assert call(srv, "POST", f"/api/rate?token={token}", body, headers=evil)[0] == 403
    # without the token: 401, whatever the path
    for path in ("/", "/api/experiments", "/img/c/00001.png", "/static/app.js"):
        assert call(srv, "GET", path)[0] == 401, path
    assert call(srv, "POST", "/api/rate", body)[0] == 401
    assert (
        call(srv, "GET", "/api/experiments", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"})[0]
        == 401
    )
    assert ratings(small_ws) == []
    # the link: the token becomes a cookie and the page reloads without it
    code, headers, _ = call(srv, "GET", f"/?token={token}")
    assert code == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and token in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    code, _h, data = call(srv, "GET", "/api/experiments", headers=jar)
    assert code == 200 and json.loads(data)["workspace"] == "ws"  # not the path of the folder
    assert (
        call(srv, "POST", "/api/rate", body, headers={**jar, "Origin": f"http://127.0.0.1:{port}"})[0] == 200
    )
    assert call(srv, "GET", "/api/experiments", headers={"Authorization": f"Bearer {token}"})[0] == 200
    # an address typed as numbers is this machine's; another site's origin is refused
    assert call(srv, "GET", "/", headers={**jar, "Host": f"10.1.2.3:{port}"})[0] == 200
    assert call(srv, "GET", "/api/experiments", headers={**jar, "Origin": "http://evil.example"})[0] == 403
    assert call(srv, "GET", "/", headers={**jar, "Host": f"gallery.example:{port}"})[0] == 403


def test_4_allow_host_read_only_and_the_loopback_default(
    small_ws: Path, served: Callable[..., GalleryServer]
) -> None:
    srv = served(small_ws, "0.0.0.0", token="u" * 22, allow_hosts=("gallery.example",), read_only=True)
    jar = {"Authorization": f"Bearer {srv.access.token}"}
    assert call(srv, "GET", "/", headers={**jar, "Host": f"gallery.example:{srv.port}"})[0] == 200
    code, _h, data = call(srv, "GET", "/api/experiments", headers=jar)
    assert code == 200 and json.loads(data)["read_only"] is True
    code, _h, data = call(
        srv, "POST", "/api/rate", {"experiment": "c", "index": 1, "favourite": True}, headers=jar
    )
    assert code == 403 and b"read-only" in data
    assert ratings(small_ws) == []
    # this machine only: no token, and the Host check keeps DNS rebinding out
    local = served(small_ws)
    assert local.access.token is None
    assert call(local, "GET", "/api/experiments")[0] == 200
    assert call(local, "GET", "/api/experiments", headers={"Host": f"evil.example:{local.port}"})[0] == 403


@pytest.mark.slow
def test_4_sdp_gallery_prints_a_link_with_the_token(small_ws: Path) -> None:
    def first_lines(*argv: str) -> str:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stable_discovery",
                "gallery",
                "--workspace",
                str(small_ws),
                "--no-browser",
                "--port",
                "0",
                *argv,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            lines = ""
            while "http://" not in lines:
                line = proc.stdout.readline()
                assert line, lines
                lines += line
            return lines
        finally:
            proc.kill()
            proc.wait()

    shared = first_lines("--host", "0.0.0.0")
    assert "anyone with this link can see and rate" in shared and "/?token=" in shared, shared
    local = first_lines()
    assert "http://127.0.0.1:" in local and "token" not in local
    code, _out, err = sdp("gallery", "--workspace", str(small_ws), "--host", "0.0.0.0", "--token", "short")
    assert code == 2 and "16 to 200" in err


# ---------------------------------------------------------------------------------------
# 5. read-only (and full) workspaces can be browsed


def test_5_a_read_only_workspace_is_browsed_and_says_why_it_cannot_be_marked(
    tmpl: Path, tmpfs: Callable[[str], Path], served: Callable[..., GalleryServer]
) -> None:
    disk = tmpfs("4m")
    ws = disk / "ws"
    assert run(tmpl, ws, "--name", "c")[0] == 0
    assert sdp("fav", "c", "1", "2", "3", "--workspace", str(ws))[0] == 0
    remount(disk, "ro")
    before = snapshot(ws)
    code, out, err = sdp("runs", "--workspace", str(ws))
    assert code == 0 and "20/20" in out, err
    assert sdp("show", "c", "3", "--workspace", str(ws))[0] == 0
    assert sdp("stats", "c", "--workspace", str(ws))[0] == 0
    code, out, err = sdp("refine", "c", "--workspace", str(ws))
    assert code == 0 and "prompt = " in out, err
    srv = served(ws)
    assert srv.read_only and srv.forced_read_only
    code, _h, data = call(srv, "GET", "/api/samples?experiment=c")
    assert code == 200, data
    assert call(srv, "GET", "/thumb/c/00001.png")[0] == 200
    for argv in (("fav", "c", "1"), ("run", str(tmpl), "--backend", "dummy", "--name", "c")):
        code, _out, err = sdp(*argv, "--workspace", str(ws))
        no_bug(err)
        assert code == 1 and "read-only file system" in err and "usable SQLite" not in err, err
    assert snapshot(ws) == before


# ---------------------------------------------------------------------------------------
# 6. a deleted PNG is noticed and made again


def test_6_a_deleted_image_is_shown_missing_and_made_again(tmpl: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run(tmpl, ws, "--name", "c")[0] == 0
    five = (ws / "c" / "00005.png").read_bytes()
    (ws / "c" / "00005.png").unlink()
    code, out, _err = sdp("runs", "--workspace", str(ws))
    assert code == 0 and "19/20" in out and "MISSING" in out and "00005.png" in out, out
    listed = json.loads(sdp("runs", "--json", "--workspace", str(ws))[1])
    assert (listed["done"], listed["missing"]) == (20, 1)
    code, out, _err = sdp("show", "c", "5", "--regen", "--workspace", str(ws))
    assert code == 1 and "(missing" in out and "missing" in out.splitlines()[-1]
    assert not (ws / "c" / "00005.png").exists()
    code, out, _err = sdp("show", "c", "5", "--regen", "--save", "--workspace", str(ws))
    assert code == 0 and "saved" in out
    assert (ws / "c" / "00005.png").read_bytes() == five
    # resuming makes a missing image again, and so does sdp repair --regen
    seven = (ws / "c" / "00007.png").read_bytes()
    (ws / "c" / "00007.png").unlink()
    code, _out, err = run(tmpl, ws, "--name", "c")
    assert code == 0 and "1 image is missing" in err and "(1 new" in err, err
    assert (ws / "c" / "00007.png").read_bytes() == seven
    (ws / "c" / "00007.png").unlink()
    code, out, _err = sdp("repair", "c", "--workspace", str(ws))
    assert code == 1 and "1 image missing (00007.png)" in out
    code, out, _err = sdp("repair", "c", "--regen", "--workspace", str(ws))
    assert code == 0 and "1 missing image made again" in out
    assert (ws / "c" / "00007.png").read_bytes() == seven
    assert "MISSING" not in sdp("runs", "--workspace", str(ws))[1]


# ---------------------------------------------------------------------------------------
# 7. a newer store is refused


def test_7_a_store_changed_by_a_newer_version_is_refused_before_any_write(tmpl: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run(tmpl, ws, "--name", "c")[0] == 0
    db = sqlite3.connect(ws / "discovery.db")
    with db:
        db.execute("INSERT INTO _migrations VALUES ('0099_from_the_future', 1.0)")
        db.execute("ALTER TABLE samples RENAME TO samples_v2")  # a real schema change
    db.close()
    before = snapshot(ws)
    for argv in (
        ("runs",),
        ("show", "c", "1"),
        ("fav", "c", "1"),
        ("stats", "c"),
        ("run", str(tmpl), "--backend", "dummy", "--name", "c"),
        ("run", str(tmpl), "--backend", "dummy", "--name", "d"),
    ):
        code, _out, err = sdp(*argv, "--workspace", str(ws))
        no_bug(err)
        assert code == 1 and "newer version" in err and "0099_from_the_future" in err, (argv, err)
    with pytest.raises(StoreFault, match="newer version"):
        make_server(ws)
    assert snapshot(ws) == before


# ---------------------------------------------------------------------------------------
# 8. damaged pages


def test_8_a_damaged_database_is_reported_and_repaired(tmpl: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run(tmpl, ws, "--name", "c", "--count", "600", "--set", "size=8x8")[0] == 0
    assert sdp("fav", "c", "1", "2", "--workspace", str(ws))[0] == 0
    pictures = images(ws / "c")
    # dd if=/dev/urandom of=ws/discovery.db bs=4096 seek=20 count=8 conv=notrunc
    assert (ws / "discovery.db").stat().st_size > 28 * 4096
    with open(ws / "discovery.db", "r+b") as f:
        f.seek(20 * 4096)
        f.write(random.Random(8).randbytes(8 * 4096))
    damaged = 0
    for argv in (
        ("runs",),
        ("stats", "c"),
        ("fav", "c", "3"),
        ("run", str(tmpl), "--backend", "dummy", "--name", "c", "--count", "600", "--set", "size=8x8"),
    ):
        code, _out, err = sdp(*argv, "--workspace", str(ws))
        no_bug(err)
        assert code in (0, 1), err
        if code == 1:
            assert "damaged" in err and "sdp repair --workspace" in err, err
            damaged += 1
    assert damaged >= 2
    assert images(ws / "c") == pictures
    code, out, err = sdp("repair", "--workspace", str(ws))
    assert code == 0, err
    assert "was damaged" in out and "kept as" in out and "600 images given their rows" in out, out
    assert len(list(ws.glob("discovery.db.damaged-*"))) >= 1
    code, out, _err = sdp("runs", "--workspace", str(ws))
    assert "600/600" in out
    assert images(ws / "c") == pictures


@pytest.mark.parametrize("seed", range(4))
def test_8_repair_survives_damage_to_any_early_page(tmpl: Path, tmp_path: Path, seed: int) -> None:
    """Pages 2-5 hold the schema's tables (experiments among them): whatever SQLite then
    fails to read, repair rebuilds the store and says what it found in one line."""
    ws = tmp_path / "ws"
    assert run(tmpl, ws, "--name", "c", "--count", "20", "--set", "size=8x8")[0] == 0
    with open(ws / "discovery.db", "r+b") as f:
        f.seek((2 + seed) * 4096)
        f.write(random.Random(seed).randbytes(2 * 4096))
    code, out, err = sdp("repair", "--workspace", str(ws))
    no_bug(err)
    assert code == 0, err
    first = out.splitlines()[0]
    assert "was damaged" in first and "sdp repair" not in out, out
    assert "20 images given their rows" in out
    assert "20/20" in sdp("runs", "--workspace", str(ws))[1]


# ---------------------------------------------------------------------------------------
# 9. out-of-range input: 400s and usage errors


def test_9_the_gallery_answers_out_of_range_input_with_400(
    small_ws: Path, served: Callable[..., GalleryServer]
) -> None:
    srv = served(small_ws)
    deep = b'{"experiment": "c", "index": 1, "favourite": true, "x": ' + b"[" * 8000 + b"]" * 8000 + b"}"
    for body in (
        {"experiment": "c", "index": 9223372036854775808, "favourite": True},
        {"experiment": "c", "index": -1, "favourite": True},
        deep,
        b'{"experiment": "c\\ud800", "index": 1, "favourite": true}',
        {"experiment": "c\n", "index": 1, "favourite": True},
        {"experiment": "c" * 5000, "index": 1, "favourite": True},
    ):
        code, _h, data = call(srv, "POST", "/api/rate", body)
        assert code == 400 and json.loads(data)["error"], (
            body if not isinstance(body, bytes) else body[:60],
            data,
        )
    for path in (
        "/api/record?experiment=c&index=99999999999999999999",
        "/api/record?experiment=c&index=9223372036854775808",
        "/api/samples?experiment=c&after=99999999999999999999",
        "/api/samples?experiment=c&limit=-5",
        "/api/samples?experiment=c&v=animal:99999999999999999999",
        "/api/stats?experiment=c&min_stars=99999999999999999999",
    ):
        code, _h, data = call(srv, "GET", path)
        assert code == 400 and json.loads(data)["error"], (path, data)
    assert ratings(small_ws) == []


def test_9_the_command_line_refuses_out_of_range_numbers(small_ws: Path, tmpl: Path, tmp_path: Path) -> None:
    huge = "99999999999999999999"
    for argv in (("fav", "c", huge), ("reject", "c", huge), ("rate", "c", huge, "3"), ("show", "c", huge)):
        code, _out, err = sdp(*argv, "--workspace", str(small_ws))
        no_bug(err)
        assert code == 2 and "at most" in err, (argv, err)
    for extra in (("--seed", huge), ("--count", huge), ("--batch", "0")):
        code, _out, err = run(tmpl, tmp_path / "other", "--name", "x", *extra)
        no_bug(err)
        assert code == 2, (extra, err)
    big_seed = tmp_path / "seed.sdp"
    big_seed.write_text(TEMPLATE.replace("@seed = 3", f"@seed = {huge}"))
    code, _out, err = run(big_seed, tmp_path / "other", "--name", "x")
    no_bug(err)
    assert code == 2 and "@seed" in err and "64-bit" in err
    assert not (tmp_path / "other").exists()


# ---------------------------------------------------------------------------------------
# 10. idle and slow connections


def test_10_idle_and_trickling_connections_are_closed_and_never_starve_the_gallery(
    small_ws: Path, served: Callable[..., GalleryServer]
) -> None:
    srv = served(small_ws, deadlines=Deadlines(head=0.6, body=0.6, write=5))
    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    trickle = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    trickle.sendall(b"GET /api/experiments HTTP/1.1\r\n")
    started = time.monotonic()
    for _ in range(8):  # a header line byte by byte, slower than the deadline allows
        try:
            trickle.sendall(b"X")
        except OSError:
            break
        time.sleep(0.15)
    assert closed(idle) and closed(trickle)  # by the gallery, within its deadline
    assert time.monotonic() - started < 4
    idle.close()
    trickle.close()
    assert call(srv, "GET", "/api/experiments")[0] == 200


def closed(sock: socket.socket) -> bool:
    """Whether the other end closed ``sock`` (waits up to its timeout)."""
    try:
        return sock.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_10_more_connections_than_the_limit_still_leave_room(
    small_ws: Path, tmp_path: Path, served: Callable[..., GalleryServer]
) -> None:
    srv = served(small_ws, max_connections=4)
    held = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(12)]
    try:
        time.sleep(0.2)
        started = time.monotonic()
        assert call(srv, "GET", "/api/experiments")[0] == 200
        assert time.monotonic() - started < 3
    finally:
        for s in held:
            s.close()


@pytest.mark.slow
def test_10_sixty_five_idle_connections_with_a_limit_of_64_files(small_ws: Path) -> None:
    """The reproduction: ``ulimit -n 64``, 65 idle connections, then a real request."""
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
        "from stable_discovery.gallery.server import make_server\n"
        f"srv = make_server({str(small_ws)!r}, '127.0.0.1', 0)\n"
        "print(srv.port, flush=True)\n"
        "srv.serve_forever(poll_interval=0.05)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(65)]
        time.sleep(0.3)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/experiments")
        assert conn.getresponse().status == 200
        conn.close()
        for s in held:
            s.close()
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------------
# 11. names that collide with the store's files, or are otherwise unsafe


@pytest.mark.parametrize(
    "name",
    ["discovery.db", "discovery.db-wal", "Discovery.DB-journal", "con", "NUL.txt", "lpt1", "a.", ".thumbs"],
)
def test_11_unsafe_names_are_refused_up_front(tmpl: Path, tmp_path: Path, name: str) -> None:
    ws = tmp_path / "ws"
    code, _out, err = run(tmpl, ws, "--name", name, "--count", "4")
    no_bug(err)
    assert code == 2 and "bad experiment name" in err, err
    assert not ws.exists()


def test_11_a_name_taken_by_a_file_of_the_workspace_is_refused(tmpl: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert run(tmpl, ws, "--name", "c", "--count", "2")[0] == 0
    (ws / "notes.txt").write_text("mine")
    code, _out, err = run(tmpl, ws, "--name", "notes.txt", "--count", "4")
    no_bug(err)
    assert code == 2 and "not a folder" in err
    assert (ws / "notes.txt").read_text() == "mine"
    assert "notes.txt" not in sdp("runs", "--workspace", str(ws))[1]


# ---------------------------------------------------------------------------------------
# 12. reading commands create nothing


def test_12_reading_commands_never_create_a_workspace_or_a_store(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    for argv in (
        ("runs",),
        ("show", "c", "1"),
        ("stats", "c"),
        ("refine", "c"),
        ("fav", "c", "1"),
        ("rate", "c", "1", "3"),
        ("reject", "c", "1"),
        ("gallery", "--no-browser"),
        ("repair",),
    ):
        code, _out, err = sdp(*argv, "--workspace", str(typo))
        assert code == 2 and "typo" in err, (argv, err)
        assert not typo.exists(), argv
    typo.mkdir()
    code, _out, err = sdp("runs", "--workspace", str(typo))
    assert code == 2 and "no run store" in err
    assert list(typo.iterdir()) == []


def test_12_an_old_empty_store_is_left_as_it_is_by_reading(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    Store(ws).close()
    before = snapshot(ws)
    assert sdp("runs", "--workspace", str(ws))[:2] == (0, f"no experiments in {ws}\n")
    assert snapshot(ws) == before


def test_the_workspace_path_is_left_out_only_when_shared(
    small_ws: Path, served: Callable[..., GalleryServer]
) -> None:
    local = served(small_ws)
    assert json.loads(call(local, "GET", "/api/experiments")[2])["workspace"] == str(small_ws)
