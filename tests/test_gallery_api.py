"""The gallery's HTTP API against a dummy-backend workspace: listing, paging, filters,
the rating round trip, refusals of malformed requests and of files outside the workspace."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stable_discovery.cli.main import main
from stable_discovery.gallery.server import GalleryServer, make_server
from stable_discovery.store.database import Store

TEMPLATE = """\
animal = a cat | a dog | a fox
style = oil painting | watercolour | pencil sketch
prompt = <animal>, <style>
@steps = 20 | 30
@size = 64x64
@count = 30
@seed = 3
"""
SECRET = b"\x89PNG\r\n\x1a\nTOP-SECRET-OUTSIDE-THE-WORKSPACE"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with one 30-image experiment ``pets``, made once for the module."""
    root = tmp_path_factory.mktemp("gallery-src")
    template = root / "pets.sdp"
    template.write_text(TEMPLATE)
    ws = root / "ws"
    assert main(["run", str(template), "--backend", "dummy", "--workspace", str(ws)]) == 0
    return ws


@pytest.fixture
def ws(generated: Path, tmp_path: Path) -> Path:
    """A fresh copy of the generated workspace, with a secret file beside it."""
    copy = tmp_path / "ws"
    shutil.copytree(generated, copy)
    (tmp_path / "secret.png").write_bytes(SECRET)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return copy


@pytest.fixture
def server(ws: Path) -> Iterator[GalleryServer]:
    srv = make_server(ws, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def call(
    srv: GalleryServer,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw request: the path is sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        hdrs = dict(headers or {})
        data: bytes | None = None
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


def get_json(srv: GalleryServer, path: str, status: int = 200) -> Any:
    code, _h, body = call(srv, "GET", path)
    assert code == status, body
    return json.loads(body)


def rate(srv: GalleryServer, body: Any, **kw: Any) -> tuple[int, Any]:
    code, _h, data = call(srv, "POST", "/api/rate", body, **kw)
    try:
        return code, json.loads(data)
    except ValueError:
        return code, data


def ratings(ws: Path) -> list[tuple[int, int, int | None, int]]:
    db = sqlite3.connect(ws / "discovery.db")
    try:
        return db.execute("SELECT idx, favourite, stars, rejected FROM ratings ORDER BY idx").fetchall()
    finally:
        db.close()


def all_indices(srv: GalleryServer, query: str = "") -> list[int]:
    out: list[int] = []
    after: int | None = None
    while True:
        path = f"/api/samples?experiment=pets&limit=7{query}" + (
            f"&after={after}" if after is not None else ""
        )
        page = get_json(srv, path)
        out.extend(item["index"] for item in page["items"])
        if page["next"] is None:
            return out
        after = page["next"]


def traces(ws: Path) -> dict[int, dict[str, int]]:
    with Store(ws) as store:
        exp = store.require("pets")
        return {r["index"]: {k: v["index"] for k, v in r["trace"].items()} for r in store.records(exp)}


# ---------------------------------------------------------------------------------------
# listing and paging


def test_page_and_assets(server: GalleryServer) -> None:
    code, headers, body = call(server, "GET", "/")
    assert code == 200 and headers["content-type"].startswith("text/html")
    assert b"/static/app.js" in body and "script-src 'self'" in headers["content-security-policy"]
    for name, ctype in (
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ):
        code, headers, _ = call(server, "GET", f"/static/{name}")
        assert code == 200 and headers["content-type"].startswith(ctype)
    assert call(server, "GET", "/static/nothing.js")[0] == 404


def test_experiments_listing(server: GalleryServer) -> None:
    data = get_json(server, "/api/experiments")
    (exp,) = data["experiments"]
    assert exp["name"] == "pets" and exp["done"] == 30 and exp["count"] == 30
    assert exp["favourites"] == exp["rejected"] == exp["rated"] == 0


def test_keyset_paging_covers_everything_once(server: GalleryServer) -> None:
    first = get_json(server, "/api/samples?experiment=pets&limit=7")
    assert first["total"] == 30 and len(first["items"]) == 7 and first["next"] == 6
    item = first["items"][0]
    assert set(item) == {
        "index",
        "file",
        "prompt",
        "width",
        "height",
        "trace",
        "favourite",
        "stars",
        "rejected",
    }
    assert (item["width"], item["height"]) == (64, 64) and set(item["trace"]) == {"animal", "style", "steps"}
    assert item["file"] == "00000.png" and item["favourite"] is False and item["stars"] is None
    second = get_json(server, "/api/samples?experiment=pets&limit=7&after=6")
    assert "total" not in second and second["items"][0]["index"] == 7
    assert all_indices(server) == list(range(30))
    assert get_json(server, "/api/samples?experiment=pets&after=29")["items"] == []


def test_listing_refuses_bad_parameters(server: GalleryServer) -> None:
    for query, status in (
        ("", 400),
        ("experiment=nope", 404),
        ("experiment=pets&limit=0", 400),
        ("experiment=pets&limit=100000", 400),
        ("experiment=pets&limit=abc", 400),
        ("experiment=pets&after=x", 400),
        ("experiment=pets&fav=maybe", 400),
        ("experiment=pets&stars=6", 400),
        ("experiment=pets&v=animal", 400),
        ("experiment=pets&v=animal:x", 400),
        ("experiment=pets&fav=1&fav=0", 400),
        ("experiment=pets" + "&x=1" * 1001, 400),
    ):
        code, _h, body = call(server, "GET", f"/api/samples?{query}")
        assert code == status, (query, body)
        assert "error" in json.loads(body)


def test_facets_count_every_value(server: GalleryServer, ws: Path) -> None:
    names = get_json(server, "/api/facets?experiment=pets")["names"]
    assert [(f["name"], f["kind"]) for f in names] == [
        ("animal", "slot"),
        ("style", "slot"),
        ("steps", "setting"),
    ]
    by_name = {f["name"]: f for f in names}
    assert [v["text"] for v in by_name["animal"]["values"]] == ["a cat", "a dog", "a fox"]
    counts: dict[tuple[str, int], int] = {}
    for trace in traces(ws).values():
        for name, choice in trace.items():
            counts[name, choice] = counts.get((name, choice), 0) + 1
    assert {(f["name"], v["choice"]): v["count"] for f in names for v in f["values"]} == counts


def test_value_filters(server: GalleryServer, ws: Path) -> None:
    tr = traces(ws)
    assert all_indices(server, "&v=animal:1") == [i for i, t in tr.items() if t["animal"] == 1]
    assert all_indices(server, "&v=animal:0&v=animal:2") == [
        i for i, t in tr.items() if t["animal"] in (0, 2)
    ]
    both = [i for i, t in tr.items() if t["animal"] == 1 and t["style"] == 2]
    assert all_indices(server, "&v=animal:1&v=style:2") == both
    assert get_json(server, "/api/samples?experiment=pets&v=animal:1&v=style:2")["total"] == len(both)
    steps = [i for i, t in tr.items() if t["steps"] == 0]
    assert all_indices(server, "&v=steps:0") == steps
    assert all_indices(server, "&v=nosuchslot:0") == []


def test_filter_combinations_match_a_reference(server: GalleryServer, ws: Path) -> None:
    """Random mixes of value and mark filters, paged and counted, against plain Python."""
    import random

    marks = {
        1: (1, None, 0),
        2: (1, 5, 0),
        4: (0, 3, 0),
        6: (0, None, 1),
        7: (0, 1, 1),
        11: (1, 2, 1),
        13: (0, 4, 0),
        17: (1, None, 0),
        21: (0, 5, 1),
        26: (1, 3, 0),
    }
    for index, (is_fav, star, is_rej) in marks.items():
        assert (
            rate(
                server,
                {
                    "experiment": "pets",
                    "index": index,
                    "favourite": bool(is_fav),
                    "stars": star,
                    "rejected": bool(is_rej),
                },
            )[0]
            == 200
        )
    tr = traces(ws)
    options = {"animal": 3, "style": 3, "steps": 2}
    rng = random.Random(5)
    for _ in range(40):
        query, keep = "", set(tr)
        for name, n in options.items():
            if rng.random() < 0.6:
                chosen = rng.sample(range(n), rng.randint(1, n - 1) if n > 1 else 1)
                query += "".join(f"&v={name}:{c}" for c in chosen)
                keep &= {i for i, t in tr.items() if t[name] in chosen}
        fav, rej = rng.choice(["", "1", "0"]), rng.choice(["", "1", "0"])
        stars = rng.choice(["", "none", "2", "4"])
        if fav:
            query += f"&fav={fav}"
            keep &= {i for i in tr if marks.get(i, (0, None, 0))[0] == int(fav)}
        if rej:
            query += f"&rejected={rej}"
            keep &= {i for i in tr if marks.get(i, (0, None, 0))[2] == int(rej)}
        if stars == "none":
            query += "&stars=none"
            keep &= {i for i in tr if marks.get(i, (0, None, 0))[1] is None}
        elif stars:
            query += f"&stars={stars}"
            keep &= {i for i in tr if (marks.get(i, (0, None, 0))[1] or 0) >= int(stars)}
        assert all_indices(server, query) == sorted(keep), query
        assert get_json(server, f"/api/samples?experiment=pets&limit=3{query}")["total"] == len(keep), query


def test_store_has_the_gallery_indexes(ws: Path) -> None:
    with Store(ws) as store:
        names = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        applied = {r[0] for r in store.db.execute("SELECT name FROM _migrations")}
    assert {"choices_by_value", "choices_by_value_idx", "samples_by_status"} <= names
    assert "0003_gallery_indexes" in applied


def test_gallery_queries_use_the_covering_index_and_others_do_not(ws: Path) -> None:
    """The partial index is opt-in: the gallery's value filters use it, a plain join on
    (experiment_id, idx), as the statistics write it, keeps the primary key."""
    from stable_discovery.gallery.api import Filters

    with Store(ws) as store:
        db = store.db
        where, params, _ = queries_where(db, Filters(values=(("animal", (1,)), ("style", (0, 2)))))
        plan = " ".join(
            r[3]
            for r in db.execute(f"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM samples s WHERE {where}", params)
        )
        assert "choices_by_value_idx" in plan
        other = " ".join(
            r[3]
            for r in db.execute(
                "EXPLAIN QUERY PLAN SELECT c.name, COUNT(*) FROM ratings r JOIN choices c "
                "ON c.experiment_id = r.experiment_id AND c.idx = r.idx "
                "WHERE r.experiment_id = 1 GROUP BY c.name"
            )
        )
        assert "choices_by_value_idx" not in other


def queries_where(db: sqlite3.Connection, filters: Any) -> Any:
    from stable_discovery.store import gallery_queries as queries

    return queries._where(db, 1, filters, counting=True)


# ---------------------------------------------------------------------------------------
# rating


def test_rating_round_trip(server: GalleryServer, ws: Path) -> None:
    code, data = rate(server, {"experiment": "pets", "index": 3, "favourite": True})
    assert code == 200 and data["rating"] == {"favourite": True, "stars": None, "rejected": False}
    assert rate(server, {"experiment": "pets", "index": 3, "stars": 4})[0] == 200
    assert rate(server, {"experiment": "pets", "index": 5, "rejected": True, "stars": 1})[0] == 200
    assert rate(server, {"experiment": "pets", "index": 8, "stars": 2})[0] == 200
    assert rate(server, {"experiment": "pets", "index": 8, "stars": None})[0] == 200
    assert ratings(ws) == [(3, 1, 4, 0), (5, 0, 1, 1), (8, 0, None, 0)]
    # what a reload sees
    items = {i["index"]: i for i in get_json(server, "/api/samples?experiment=pets")["items"]}
    assert items[3]["favourite"] is True and items[3]["stars"] == 4
    assert items[5]["rejected"] is True and items[8]["stars"] is None
    record = get_json(server, "/api/record?experiment=pets&index=3")
    assert record["rating"] == {"favourite": True, "stars": 4, "rejected": False}
    summary = get_json(server, "/api/experiments")["experiments"][0]
    assert (summary["favourites"], summary["rejected"], summary["rated"]) == (1, 1, 2)
    # and the store agrees with the page
    with Store(ws) as store:
        assert store.rating(store.require("pets"), 3) == {"favourite": True, "stars": 4, "rejected": False}


def test_mark_filters(server: GalleryServer) -> None:
    for index, change in (
        (1, {"favourite": True}),
        (2, {"favourite": True, "stars": 5}),
        (4, {"stars": 3}),
        (6, {"rejected": True}),
        (7, {"stars": 1, "rejected": True}),
    ):
        assert rate(server, {"experiment": "pets", "index": index, **change})[0] == 200
    assert all_indices(server, "&fav=1") == [1, 2]
    assert all_indices(server, "&fav=0") == [i for i in range(30) if i not in (1, 2)]
    assert all_indices(server, "&rejected=1") == [6, 7]
    assert all_indices(server, "&rejected=0") == [i for i in range(30) if i not in (6, 7)]
    assert all_indices(server, "&stars=3") == [2, 4]
    assert all_indices(server, "&stars=1") == [2, 4, 7]
    assert all_indices(server, "&stars=none") == [i for i in range(30) if i not in (2, 4, 7)]
    assert all_indices(server, "&fav=1&stars=5&rejected=0") == [2]


BAD_BODIES: list[tuple[Any, int]] = [
    (b"{not json", 400),
    (b"\xff\xfe", 400),
    ([1, 2], 400),
    ("pets", 400),
    ({"index": 1, "favourite": True}, 400),
    ({"experiment": 7, "index": 1, "favourite": True}, 400),
    ({"experiment": "nope", "index": 1, "favourite": True}, 404),
    ({"experiment": "pets", "index": 30, "favourite": True}, 404),
    ({"experiment": "pets", "index": 10_000, "favourite": True}, 404),
    ({"experiment": "pets", "index": -1, "favourite": True}, 400),
    ({"experiment": "pets", "index": "1", "favourite": True}, 400),
    ({"experiment": "pets", "index": True, "favourite": True}, 400),
    ({"experiment": "pets", "index": 1.0, "favourite": True}, 400),
    ({"experiment": "pets", "favourite": True}, 400),
    ({"experiment": "pets", "index": 1}, 400),
    ({"experiment": "pets", "index": 1, "stars": 0}, 400),
    ({"experiment": "pets", "index": 1, "stars": 6}, 400),
    ({"experiment": "pets", "index": 1, "stars": "3"}, 400),
    ({"experiment": "pets", "index": 1, "stars": 2.5}, 400),
    ({"experiment": "pets", "index": 1, "stars": True}, 400),
    ({"experiment": "pets", "index": 1, "favourite": "yes"}, 400),
    ({"experiment": "pets", "index": 1, "favourite": 1}, 400),
    ({"experiment": "pets", "index": 1, "rejected": None}, 400),
    ({"experiment": "pets", "index": 1, "favourite": True, "colour": "red"}, 400),
    ({"experiment": "pets", "index": 1, "favourite": True, "stars": 9}, 400),
]


@pytest.mark.parametrize("body,status", BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_malformed_rating_changes_nothing(server: GalleryServer, ws: Path, body: Any, status: int) -> None:
    assert rate(server, {"experiment": "pets", "index": 2, "stars": 3})[0] == 200
    before = ratings(ws)
    code, data = rate(server, body)
    assert code == status and "error" in data
    assert ratings(ws) == before


def test_only_a_proper_post_changes_state(server: GalleryServer, ws: Path) -> None:
    good = {"experiment": "pets", "index": 1, "favourite": True}
    assert call(server, "GET", "/api/rate?experiment=pets&index=1&favourite=true")[0] == 404
    for method in ("PUT", "DELETE", "PATCH"):
        assert call(server, method, "/api/rate", good)[0] == 405
    assert call(server, "POST", "/api/samples?experiment=pets", good)[0] == 405
    assert (
        call(server, "POST", "/api/rate", json.dumps(good).encode(), {"Content-Type": "text/plain"})[0] == 415
    )
    assert call(server, "POST", "/api/rate", good, {"Origin": "http://evil.example"})[0] == 403
    assert call(server, "POST", "/api/rate", b"x" * 20_000)[0] == 413
    assert call(server, "GET", "/api/samples?experiment=pets", headers={"Host": "evil.example"})[0] == 403
    assert ratings(ws) == []
    origin = f"http://127.0.0.1:{server.port}"
    assert call(server, "POST", "/api/rate", good, {"Origin": origin})[0] == 200
    assert ratings(ws) == [(1, 1, None, 0)]


def test_record_api(server: GalleryServer, ws: Path) -> None:
    record = get_json(server, "/api/record?experiment=pets&index=4")
    with Store(ws) as store:
        expected = store.record(store.require("pets"), 4)
    assert expected is not None
    assert record == {**expected, "backend": "dummy"}  # the page says the model was not used
    assert set(record) >= {"prompt", "negative", "settings", "seed", "trace", "file", "rating"}
    assert get_json(server, "/api/record?experiment=pets&index=30", 404)["error"]
    assert get_json(server, "/api/record?experiment=pets&index=x", 400)["error"]
    assert get_json(server, "/api/record?experiment=nope&index=1", 404)["error"]


def test_stats_api(server: GalleryServer) -> None:
    assert rate(server, {"experiment": "pets", "index": 0, "favourite": True})[0] == 200
    code, _h, body = call(server, "GET", "/api/stats?experiment=pets")
    data = json.loads(body)
    if code == 501:  # the statistics module is not there yet
        assert "error" in data
        return
    assert code == 200 and data["favourites"] == 1 and data["images"] == 30
    names = {v["name"] for v in data["values"]}
    assert {"animal", "style", "steps"} <= names
    row = data["values"][0]
    assert {
        "name",
        "index",
        "text",
        "images",
        "favourites",
        "rate",
        "low",
        "high",
        "lift",
        "p_value",
        "significant",
    } <= set(row)
    assert call(server, "GET", "/api/stats?experiment=pets&min_stars=9")[0] == 400


def test_internal_errors_are_one_line_and_no_traceback(
    server: GalleryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stable_discovery.store import gallery_queries as queries

    lines: list[str] = []
    server.log = lines.append

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.delenv("SDP_DEBUG", raising=False)
    monkeypatch.setattr(queries, "page", broken)
    code, _h, body = call(server, "GET", "/api/samples?experiment=pets")
    assert code == 500 and b"Traceback" not in body and b"boom" not in body
    assert len(lines) == 1 and "RuntimeError: boom" in lines[0]


# ---------------------------------------------------------------------------------------
# files


def test_images_and_cached_thumbnails(server: GalleryServer, ws: Path) -> None:
    code, headers, body = call(server, "GET", "/img/pets/00004.png")
    assert code == 200 and headers["content-type"] == "image/png"
    assert body == (ws / "pets" / "00004.png").read_bytes()
    code, headers, body = call(server, "GET", "/thumb/pets/00004.png?v=1")
    assert code == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    cached = ws / ".thumbs" / "pets" / "00004-320.jpg"
    assert cached.read_bytes() == body
    made = cached.stat().st_mtime_ns
    code, headers2, body2 = call(server, "GET", "/thumb/pets/00004.png")
    assert code == 200 and body2 == body and cached.stat().st_mtime_ns == made
    assert call(server, "GET", "/thumb/pets/00004.png", headers={"If-None-Match": headers2["etag"]})[0] == 304
    # a newer image makes a new thumbnail
    later = made + 5_000_000_000
    os.utime(ws / "pets" / "00004.png", ns=(later, later))
    assert call(server, "GET", "/thumb/pets/00004.png")[0] == 200
    assert cached.stat().st_mtime_ns == later


def test_files_outside_the_experiment_folders_are_refused(
    server: GalleryServer, ws: Path, tmp_path: Path
) -> None:
    # a symlink inside the experiment folder pointing out of the workspace
    (ws / "pets" / "evil.png").symlink_to(tmp_path / "secret.png")
    (ws / "pets" / "evil2.png").symlink_to("../../secret.png")
    # an experiment whose folder is a symlink to somewhere else
    template = tmp_path / "other.sdp"
    template.write_text("prompt = a tree\n@size = 64x64\n@count = 2\n")
    assert main(["run", str(template), "--backend", "dummy", "--workspace", str(ws)]) == 0
    outside = tmp_path / "elsewhere"
    shutil.move(str(ws / "other"), outside)
    (outside / "00000.png").write_bytes(SECRET)
    (ws / "other").symlink_to(outside)
    (ws / "pets" / ".hidden.png").write_bytes(SECRET)
    paths = [
        "/img/pets/../../secret.png",
        "/img/pets/../discovery.db",
        "/img/../secret.png",
        "/img/pets/..%2f..%2fsecret.png",
        "/img/pets/..%2F..%2Fsecret.png",
        "/img/pets/%2e%2e%2f%2e%2e%2fsecret.png",
        "/img/%2e%2e/secret.png",
        "/img/pets%2f..%2f..%2fsecret.png",
        "/img/pets/..%5c..%5csecret.png",
        "/thumb/pets/..%2f..%2fsecret.png",
        "/img//etc/passwd",
        "/img/pets//etc/passwd",
        "/img/pets/%2Fetc%2Fpasswd",
        "/img/pets/%2fetc%2fpasswd.png",
        "/img/pets/00000.png%00.txt",
        "/img/pets/00000.png%00",
        "/img/pets/%00",
        "/img/pets/%ff.png",
        "/img/pets/evil.png",
        "/thumb/pets/evil.png",
        "/img/pets/evil2.png",
        "/img/pets/.hidden.png",
        "/img/pets/.lock",
        "/img/other/00000.png",
        "/thumb/other/00000.png",
        "/img/.thumbs/pets/00000-320.jpg",
        "/img/nope/00000.png",
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/../secret.png",
        "/%2e%2e/secret.png",
        "http://127.0.0.1/../secret.png",
        "/img/pets/00000.png/..",
        "/etc/passwd",
        str(tmp_path / "secret.png"),
    ]
    for path in paths:
        code, _h, body = call(server, "GET", path)
        assert code in (403, 404), (path, code)
        assert b"SECRET" not in body, path
    assert not (ws / ".thumbs" / "other").exists()
    # the control: real images are served
    assert call(server, "GET", "/img/pets/00000.png")[0] == 200
    assert call(server, "GET", "/img/pets/0000%30.png")[0] == 200


# ---------------------------------------------------------------------------------------
# the command


def test_gallery_command_refuses_a_folder_without_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gallery", "--workspace", str(tmp_path), "--no-browser", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "discovery.db" in err and "Traceback" not in err


def test_gallery_command_reports_a_busy_port(
    server: GalleryServer, ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gallery", "--workspace", str(ws), "--no-browser", "--port", str(server.port)]) == 2
    assert "in use" in capsys.readouterr().err


def test_gallery_command_options() -> None:
    from stable_discovery.cli.main import build_parser

    args = build_parser().parse_args(["gallery", "--port", "0", "--host", "0.0.0.0", "--no-browser"])
    assert (args.port, args.host, args.no_browser) == (0, "0.0.0.0", True)
    default = build_parser().parse_args(["gallery"])
    assert default.host == "127.0.0.1" and default.no_browser is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["gallery", "--port", "70000"])
