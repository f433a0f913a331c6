"""The gallery's API for daily screening: the grid as a window (pages backwards, the last
page, a count with any page), filters for absent parts and prompt words, value counts
that follow the other filters, a running experiment followed as it grows (ETag, the
run's lock, what was added since), archiving, and the zip download."""

from __future__ import annotations

import http.client
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stable_discovery.cli.main import main
from stable_discovery.gallery.server import GalleryServer, make_server
from stable_discovery.run.files import ExperimentLock
from stable_discovery.run.pngmeta import read_metadata
from stable_discovery.sampling.sample import Chosen, Sample
from stable_discovery.store.database import Store

TEMPLATE = """\
animal = a cat | a dog | a fox
style = oil painting | watercolour
prompt = <animal>[, <style>] in the snow
@steps = 20 | 30
@size = 64x64 | 48x48
@count = 40
@seed = 5
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gallery-live")
    template = root / "pets.sdp"
    template.write_text(TEMPLATE)
    ws = root / "ws"
    assert main(["run", str(template), "--backend", "dummy", "--workspace", str(ws)]) == 0
    assert main(["fav", "pets", "1", "4", "9", "16", "25", "--workspace", str(ws)]) == 0
    assert main(["reject", "pets", "9", "30", "--workspace", str(ws)]) == 0
    return ws


@pytest.fixture
def ws(generated: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "ws"
    shutil.copytree(generated, copy)
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


def request(
    srv: GalleryServer, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        hdrs = dict(headers or {})
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get(srv: GalleryServer, path: str, status: int = 200) -> Any:
    code, _h, body = request(srv, "GET", path)
    assert code == status, body
    return json.loads(body)


def records(ws: Path) -> dict[int, dict[str, Any]]:
    with Store(ws) as store:
        return {r["index"]: r for r in store.records(store.require("pets"))}


def indices(page: dict[str, Any]) -> list[int]:
    return [item["index"] for item in page["items"]]


# ---------------------------------------------------------------------------------------
# the grid as a window


def test_pages_backwards_and_the_last_page(server: GalleryServer) -> None:
    last = get(server, "/api/samples?experiment=pets&limit=7&before=end")
    assert indices(last) == list(range(33, 40)) and last["prev"] == 33 and "next" not in last
    seen, before = [], "end"
    while True:
        page = get(server, f"/api/samples?experiment=pets&limit=7&before={before}")
        seen = indices(page) + seen
        if page["prev"] is None:
            break
        before = page["prev"]
    assert seen == list(range(40))
    # a page that opens the window at an index, with the count asked for
    middle = get(server, "/api/samples?experiment=pets&limit=5&after=24&total=1")
    assert indices(middle) == [25, 26, 27, 28, 29] and middle["total"] == 40 and middle["next"] == 29
    # backwards under a filter
    favs = get(server, "/api/samples?experiment=pets&fav=1&limit=2&before=end&total=1")
    assert indices(favs) == [16, 25] and favs["prev"] == 16 and favs["total"] == 5
    assert indices(get(server, "/api/samples?experiment=pets&fav=1&limit=9&before=16")) == [1, 4, 9]
    assert get(server, "/api/samples?experiment=pets&before=x", 400)["error"]


def test_absent_parts_and_prompt_words(server: GalleryServer, ws: Path) -> None:
    recs = records(ws)
    no_style = [i for i, r in recs.items() if "style" not in r["trace"]]
    assert 0 < len(no_style) < 40
    page = get(server, "/api/samples?experiment=pets&v=style:-1&limit=100")
    assert indices(page) == no_style and page["total"] == len(no_style)
    # absent or watercolour: alternatives of one slot
    either = [i for i, r in recs.items() if r["trace"].get("style", {"index": -1})["index"] in (-1, 1)]
    assert indices(get(server, "/api/samples?experiment=pets&v=style:-1&v=style:1&limit=100")) == either
    both = [i for i in no_style if recs[i]["trace"]["animal"]["index"] == 2]
    assert indices(get(server, "/api/samples?experiment=pets&v=style:-1&v=animal:2&limit=100")) == both
    # words of the prompt, in any case, all of them
    dogs = [i for i, r in recs.items() if "dog" in r["prompt"] and "watercolour" in r["prompt"]]
    page = get(server, "/api/samples?experiment=pets&q=WaterColour%20dog&limit=100")
    assert indices(page) == dogs and page["total"] == len(dogs) and dogs
    assert get(server, "/api/samples?experiment=pets&q=%25&limit=100")["total"] == 0  # LIKE's % is a letter
    assert get(server, "/api/samples?experiment=pets&q=" + "%20".join(f"w{i}" for i in range(17)), 400)[
        "error"
    ]


def test_facets_name_settings_and_absent_values_and_follow_the_other_filters(
    server: GalleryServer, ws: Path
) -> None:
    recs = records(ws)
    names = {f["name"]: f for f in get(server, "/api/facets?experiment=pets")["names"]}
    assert {n: f["kind"] for n, f in names.items()} == {
        "animal": "slot",
        "prompt[1]": "optional",  # the optional part itself, present or absent
        "style": "slot",
        "steps": "setting",
        "size": "setting",  # sampled @size: a setting, as sdp stats says
    }
    absent = [v for v in names["style"]["values"] if v.get("absent")]
    assert absent == [
        {
            "choice": -1,
            "text": "",
            "count": sum(1 for r in recs.values() if "style" not in r["trace"]),
            "absent": True,
        }
    ]
    # with a filter on animal: the other names count among the dogs; animal's own values
    # keep their counts (they are alternatives), under the other filters only
    filtered = get(server, "/api/facets?experiment=pets&v=animal:1&fav=0")["names"]
    favs = {1, 4, 9, 16, 25}
    dogs = [r for i, r in recs.items() if r["trace"]["animal"]["index"] == 1 and i not in favs]
    not_fav = [r for i, r in recs.items() if i not in favs]

    def count(rows: list[dict[str, Any]], name: str, choice: int) -> int:
        return sum(1 for r in rows if r["trace"].get(name, {"index": -1})["index"] == choice)

    for facet in filtered:
        rows = not_fav if facet["name"] == "animal" else dogs
        for value in facet["values"]:
            assert value["count"] == count(rows, facet["name"], value["choice"]), (facet["name"], value)


# ---------------------------------------------------------------------------------------
# following a run


def _sample(index: int) -> Sample:
    return Sample(
        index,
        f"a new sample {index}",
        "",
        {"steps": 20, "width": 64, "height": 64},
        index,
        {"animal": Chosen(1, "a dog"), "steps": Chosen(0, "20"), "size": Chosen(0, "64x64")},
    )


def test_the_experiment_list_is_tagged_and_says_what_runs(server: GalleryServer, ws: Path) -> None:
    code, headers, body = request(server, "GET", "/api/experiments")
    assert code == 200 and headers["etag"]
    (exp,) = json.loads(body)["experiments"]
    assert (exp["running"], exp["archived"]) == (False, False)
    # nothing changed: 304 without a body
    code, again, body = request(server, "GET", "/api/experiments", headers={"If-None-Match": headers["etag"]})
    assert code == 304 and body == b"" and again["etag"] == headers["etag"]
    # a mark changes the list (its counts)
    assert (
        request(server, "POST", "/api/rate", {"experiment": "pets", "index": 2, "favourite": True})[0] == 200
    )
    code, marked, _ = request(server, "GET", "/api/experiments", headers={"If-None-Match": headers["etag"]})
    assert code == 200 and marked["etag"] != headers["etag"]
    # a run holding the lock of an unfinished experiment: running, and the tag moves
    with Store(ws) as store:
        store.db.execute("UPDATE experiments SET count = 50")
    _, before_run, _ = request(server, "GET", "/api/experiments")
    with ExperimentLock(ws / "pets", "pets"):
        code, during, body = request(
            server, "GET", "/api/experiments", headers={"If-None-Match": before_run["etag"]}
        )
        assert code == 200 and json.loads(body)["experiments"][0]["running"] is True
    (exp,) = get(server, "/api/experiments")["experiments"]
    assert exp["running"] is False


def test_what_a_run_added_since_a_page_was_read(server: GalleryServer, ws: Path) -> None:
    first = get(server, "/api/samples?experiment=pets&v=animal:1")
    stamp = first["stamp"]
    assert get(server, f"/api/samples?experiment=pets&v=animal:1&since={stamp}") == {
        "items": [],
        "more": False,
        "added": 0,
        "stamp": stamp,
        "experiment": "pets",
    }
    with Store(ws) as store:
        exp = store.require("pets")
        store.db.execute("UPDATE experiments SET count = 50")
        store.record_done(exp.id, [(_sample(i), f"{i:05d}.png", 0.1, 2) for i in (45, 41)])
    news = get(server, f"/api/samples?experiment=pets&v=animal:1&since={stamp}")
    assert indices(news) == [41, 45] and news["added"] == 2 and news["stamp"] > stamp
    assert news["items"][0]["trace"] == {"animal": 1, "steps": 0, "size": 0}
    assert get(server, f"/api/samples?experiment=pets&v=animal:0&since={stamp}")["added"] == 0
    some = get(server, f"/api/samples?experiment=pets&since={stamp}&limit=1")
    assert indices(some) == [41] and some["more"] is True and some["added"] == 2
    assert get(server, f"/api/samples?experiment=pets&since={news['stamp']}")["items"] == []
    assert get(server, "/api/samples?experiment=pets&since=soon", 400)["error"]


# ---------------------------------------------------------------------------------------
# archive and download


def test_archive_and_unarchive(server: GalleryServer, ws: Path) -> None:
    code, _h, body = request(server, "POST", "/api/archive", {"experiment": "pets", "archived": True})
    assert code == 200 and json.loads(body) == {"experiment": "pets", "archived": True}
    assert get(server, "/api/experiments")["experiments"][0]["archived"] is True
    with Store(ws) as store:
        assert store.require("pets").archived
    assert request(server, "POST", "/api/archive", {"experiment": "pets", "archived": False})[0] == 200
    assert get(server, "/api/experiments")["experiments"][0]["archived"] is False
    for body, status in (
        ({"experiment": "nope", "archived": True}, 404),
        ({"experiment": "pets", "archived": "yes"}, 400),
        ({"experiment": "pets"}, 400),
        ({"experiment": "pets", "archived": True, "x": 1}, 400),
    ):
        assert request(server, "POST", "/api/archive", body)[0] == status, body


def test_download_is_a_zip_of_the_filtered_images_with_their_metadata(
    server: GalleryServer, ws: Path
) -> None:
    code, headers, body = request(server, "GET", "/api/download?experiment=pets&fav=1&rejected=0")
    assert code == 200 and headers["content-type"] == "application/zip"
    assert headers["content-disposition"] == 'attachment; filename="pets-selection.zip"'
    archive = zipfile.ZipFile(io.BytesIO(body))
    names = archive.namelist()
    assert names == ["00001.png", "00004.png", "00016.png", "00025.png", "metadata.jsonl"]
    recs = records(ws)
    rows = [json.loads(line) for line in archive.read("metadata.jsonl").decode().splitlines()]
    assert [r["file_name"] for r in rows] == names[:-1]
    for row in rows:
        stored = recs[row["index"]]
        assert {k: row[k] for k in ("prompt", "negative", "settings", "seed", "trace", "rating")} == {
            k: stored[k] for k in ("prompt", "negative", "settings", "seed", "trace", "rating")
        }
        data = archive.read(row["file_name"])
        assert data == (ws / "pets" / row["file_name"]).read_bytes()
        parameters, own = read_metadata(io.BytesIO(data))
        assert parameters is not None and parameters.startswith(stored["prompt"])
        assert own is not None and own["index"] == row["index"] and own["trace"] == stored["trace"]
    everything = zipfile.ZipFile(io.BytesIO(request(server, "GET", "/api/download?experiment=pets")[2]))
    assert len(everything.namelist()) == 41
    (ws / "pets" / "00004.png").unlink()  # deleted by hand: the zip says so
    partial = zipfile.ZipFile(io.BytesIO(request(server, "GET", "/api/download?experiment=pets&fav=1")[2]))
    assert "00004.png" not in partial.namelist() and "00004.png" in partial.read("missing.txt").decode()
    assert request(server, "GET", "/api/download?experiment=nope")[0] == 404
