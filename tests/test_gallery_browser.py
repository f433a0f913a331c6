"""The gallery in a real headless Chromium: keys, mouse, filters, viewer, compare, reload.

Uses Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) through
Playwright's Python API with ``executable_path``: Playwright never downloads a browser
here. At the end the run store must hold exactly the marks that were made.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stable_discovery.cli.main import main
from stable_discovery.gallery.server import GalleryServer, make_server
from stable_discovery.store.database import Store

CHROMIUM = os.environ.get("SDP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the Python package playwright is not installed (pip install playwright)"
)
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

TEMPLATE = """\
animal = a cat | a dog | a fox
style = oil painting | watercolour
prompt = <animal>, <style>
@steps = 20 | 30
@size = 64x64
@count = 24
@seed = 11
"""

Marks = dict[int, tuple[bool, int | None, bool]]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gallery-browser")
    template = root / "pets.sdp"
    template.write_text(TEMPLATE)
    ws = root / "ws"
    assert main(["run", str(template), "--backend", "dummy", "--workspace", str(ws)]) == 0
    other = root / "trees.sdp"
    other.write_text("prompt = a tree | a bush\n@size = 64x64\n@count = 4\n")
    assert main(["run", str(other), "--backend", "dummy", "--workspace", str(ws)]) == 0
    return ws


@pytest.fixture(scope="module")
def server(workspace: Path) -> Iterator[GalleryServer]:
    srv = make_server(workspace, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        except Exception as exc:  # noqa: BLE001 - a broken install: say why instead of failing obscurely
            pytest.skip(f"chromium at {CHROMIUM} did not start: {exc}")
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, server: GalleryServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    pg.errors = errors
    yield pg
    context.close()


def settle(page: Any, timeout: float = 15.0) -> None:
    """Wait until the page has no request in flight (polled from here: the page's CSP
    forbids the eval that ``wait_for_function`` needs)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        if page.evaluate("window.sdpPending") == 0:
            quiet += 1
            if quiet >= 3:
                return
        else:
            quiet = 0
        page.wait_for_timeout(30)
    raise AssertionError("the page kept requests in flight")


def selected(page: Any) -> int:
    return int(page.locator(".card.sel").get_attribute("data-index"))


def card(page: Any, index: int) -> Any:
    return page.locator(f'.card[data-index="{index}"]')


def classes(page: Any, index: int) -> set[str]:
    return set((card(page, index).get_attribute("class") or "").split())


def columns(page: Any) -> int:
    return int(
        page.evaluate(
            "getComputedStyle(document.getElementById('grid'))"
            ".gridTemplateColumns.split(' ').filter(Boolean).length"
        )
    )


def store_marks(ws: Path) -> Marks:
    """Every sample with a mark that is not the default."""
    db = sqlite3.connect(ws / "discovery.db")
    try:
        rows = db.execute("SELECT idx, favourite, stars, rejected FROM ratings").fetchall()
    finally:
        db.close()
    return {i: (bool(f), s, bool(r)) for i, f, s, r in rows if f or s is not None or r}


def shown(page: Any) -> list[int]:
    return [int(x) for x in page.locator(".card").evaluate_all("els => els.map(e => e.dataset.index)")]


def test_screening_session(page: Any, server: GalleryServer, workspace: Path, tmp_path: Path) -> None:
    expected: Marks = {}

    def mark(index: int, fav: bool | None = None, stars: Any = ..., rej: bool | None = None) -> None:
        f, s, r = expected.get(index, (False, None, False))
        expected[index] = (f if fav is None else fav, s if stars is ... else stars, r if rej is None else rej)
        if expected[index] == (False, None, False):
            del expected[index]

    page.goto(server.url)
    page.wait_for_selector(".card")
    settle(page)
    # the experiments list: the newest is open first; a click opens another
    assert page.locator("#experiments li").count() == 2
    assert page.locator(".card").count() == 4
    page.locator('#experiments li[data-name="pets"]').click()
    settle(page)
    assert "exp=pets" in page.url
    assert page.locator(".card").count() == 24
    assert selected(page) == 0
    cols = columns(page)
    assert cols >= 3

    # keys: move, favourite, stars, reject
    page.keyboard.press("ArrowRight")
    assert selected(page) == 1
    page.keyboard.press("f")
    mark(1, fav=True)
    page.keyboard.press("l")
    page.keyboard.press("4")
    mark(2, stars=4)
    page.keyboard.press("ArrowDown")
    assert selected(page) == 2 + cols
    page.keyboard.press("x")
    mark(2 + cols, rej=True)
    page.keyboard.press("k")
    assert selected(page) == 2
    page.keyboard.press("4")  # the same stars again clear them
    mark(2, stars=None)
    page.keyboard.press("2")
    mark(2, stars=2)
    page.keyboard.press("h")
    page.keyboard.press("f")  # toggles back off
    mark(1, fav=False)
    page.keyboard.press("j")
    assert selected(page) == 1 + cols
    page.keyboard.press("f")
    page.keyboard.press("5")
    mark(1 + cols, fav=True, stars=5)
    settle(page)
    assert "is-fav" in classes(page, 1 + cols) and card(page, 1 + cols).get_attribute("data-stars") == "5"
    assert "is-rej" in classes(page, 2 + cols) and "is-fav" not in classes(page, 1)
    assert store_marks(workspace) == expected

    # the mouse, on the grid
    target = card(page, 6)
    target.hover()
    target.locator("button.fav").click()
    mark(6, fav=True)
    target.locator('button.star[data-n="3"]').click()
    mark(6, stars=3)
    card(page, 7).hover()
    card(page, 7).locator("button.rej").click()
    mark(7, rej=True)
    settle(page)
    assert selected(page) == 7
    assert store_marks(workspace) == expected

    # the viewer: Enter opens it with the record, keys work inside, Escape closes
    page.keyboard.press("ArrowLeft")
    assert selected(page) == 6
    page.keyboard.press("Enter")
    viewer = page.locator("#viewer")
    assert viewer.is_visible()
    settle(page)
    with Store(workspace) as store:
        record6 = store.record(store.require("pets"), 6)
        record8 = store.record(store.require("pets"), 8)
    assert record6 is not None and record8 is not None
    assert page.locator("#v-title").inner_text() == "#6 · 64×64"  # the index and the image size
    assert record6["prompt"] in page.locator("#v-record").inner_text()
    assert str(record6["seed"]) in page.locator("#v-record").inner_text()
    assert page.locator("#v-img").get_attribute("src").startswith("/img/pets/00006.png")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    settle(page)
    assert page.locator("#v-title").inner_text().startswith("#8 ")
    assert record8["prompt"] in page.locator("#v-record").inner_text()
    page.keyboard.press("f")
    mark(8, fav=True)
    page.locator("#v-actions button.rej").click()  # the mouse, in the viewer
    mark(8, rej=True)
    page.locator('#v-actions button.star[data-n="1"]').click()
    mark(8, stars=1)
    settle(page)
    assert "lit" in (page.locator("#v-actions button.fav").get_attribute("class") or "")
    page.keyboard.press("Escape")
    assert not viewer.is_visible()
    assert selected(page) == 8
    card(page, 9).locator("img").click()  # a click on an image opens it too
    assert viewer.is_visible() and page.locator("#v-title").inner_text().startswith("#9 ")
    page.locator("#v-close").click()
    assert not viewer.is_visible()
    settle(page)
    assert store_marks(workspace) == expected

    # compare two images side by side
    page.keyboard.press("c")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("c")
    compare = page.locator("#compare")
    assert compare.is_visible()
    settle(page)
    assert page.locator(".compare-pane").count() == 2
    assert page.locator(".compare-pane").first.get_attribute("data-index") == "9"
    page.screenshot(path=str(tmp_path / "compare.png"))
    page.keyboard.press("Escape")
    assert not compare.is_visible()

    # filters: marks
    page.select_option("#f-fav", "1")
    settle(page)
    favourites = sorted(i for i, (f, _s, _r) in expected.items() if f)
    assert shown(page) == favourites
    page.select_option("#f-fav", "")
    page.select_option("#f-rejected", "0")
    settle(page)
    rejected = {i for i, (_f, _s, r) in expected.items() if r}
    assert shown(page) == [i for i in range(24) if i not in rejected]
    page.select_option("#f-rejected", "")
    page.select_option("#f-stars", "3")
    settle(page)
    assert shown(page) == sorted(i for i, (_f, s, _r) in expected.items() if s is not None and s >= 3)
    page.select_option("#f-stars", "")
    settle(page)
    assert len(shown(page)) == 24

    # filters: a slot value and a setting value
    with Store(workspace) as store:
        traces = {
            r["index"]: {k: v["index"] for k, v in r["trace"].items()}
            for r in store.records(store.require("pets"))
        }
    page.locator('#facets input[data-key="animal:1"]').check()
    settle(page)
    dogs = [i for i, t in traces.items() if t["animal"] == 1]
    assert shown(page) == dogs and dogs
    page.locator('#facets input[data-key="steps:1"]').check()
    settle(page)
    dogs30 = [i for i in dogs if traces[i]["steps"] == 1]
    assert shown(page) == dogs30
    assert selected(page) == (dogs30[0] if dogs30 else None)
    if dogs30:  # rate inside a filtered grid
        page.keyboard.press("3")
        mark(dogs30[0], stars=3 if expected.get(dogs30[0], (0, None, 0))[1] != 3 else None)
    settle(page)
    page.screenshot(path=str(tmp_path / "filtered.png"))

    # reload: the filters come back from the URL, the marks from the store
    page.reload()
    page.wait_for_selector(".card")
    settle(page)
    assert shown(page) == dogs30
    assert page.locator('#facets input[data-key="animal:1"]').is_checked()
    page.locator("#clear-filters").click()
    settle(page)
    assert len(shown(page)) == 24
    for index in range(24):
        fav, stars, rej = expected.get(index, (False, None, False))
        got = classes(page, index)
        assert ("is-fav" in got, "is-rej" in got) == (fav, rej), index
        assert card(page, index).get_attribute("data-stars") == str(stars or 0), index

    # the statistics view shows the table and the chart
    page.keyboard.press("s")
    settle(page)
    stats = page.locator("#stats-view")
    assert stats.is_visible()
    if page.locator(".stats-table").count():
        assert page.locator(".chart svg .row").count() >= 5
        assert page.locator(".stats-table tbody tr").count() >= 5
        first = page.locator(".stats-table tbody tr").first
        label = first.locator("td").nth(1).inner_text()
        if label != "(absent)":  # a click on a row shows that value's images
            first.click()
            settle(page)
            assert page.locator("#grid-view").is_visible() and len(shown(page)) >= 1
            page.locator("#clear-filters").click()
            settle(page)
    page.keyboard.press("g")
    assert page.locator("#grid-view").is_visible()
    assert len(shown(page)) == 24

    # what the store holds is exactly what was done
    assert store_marks(workspace) == expected
    assert page.errors == []
