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
from tests.helpers import REPO

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


# ---------------------------------------------------------------------------------------
# daily screening: phones and tablets, keys everywhere, live runs, place kept, download

PHONE = {"width": 390, "height": 844}
TABLET = {"width": 820, "height": 1180}
DESKTOP = {"width": 1200, "height": 800}
#: Screenshots of the phone and tablet layouts, kept for a person to look at (git-ignored).
ARTIFACTS = REPO / "test-artifacts" / "gallery"

DEEP = """\
animal = a cat | a dog | a fox
style = oil painting | watercolour
prompt = <animal>[, <style>] on a hill
@steps = 20 | 30
@size = 64x64 | 48x48
@count = 260
@seed = 7
"""


def serve(workspace: Path) -> tuple[GalleryServer, threading.Thread]:
    srv = make_server(workspace, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return srv, thread


@pytest.fixture
def fresh(workspace: Path, tmp_path: Path) -> Iterator[tuple[GalleryServer, Path]]:
    """A server over a copy of the module's workspace: marks made here stay here."""
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    db = sqlite3.connect(ws / "discovery.db")
    try:
        db.execute("DELETE FROM ratings")  # the marks other tests made
        db.commit()
    finally:
        db.close()
    srv, thread = serve(ws)
    yield srv, ws
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GalleryServer, Path]]:
    """260 images (more than a page) with an optional part, and a small experiment."""
    root = tmp_path_factory.mktemp("gallery-deep")
    (root / "deep.sdp").write_text(DEEP)
    (root / "small.sdp").write_text("prompt = a tree | a bush\n@size = 64x64\n@count = 4\n")
    ws = root / "ws"
    assert main(["run", str(root / "small.sdp"), "--backend", "dummy", "--workspace", str(ws)]) == 0
    assert main(["run", str(root / "deep.sdp"), "--backend", "dummy", "--workspace", str(ws)]) == 0
    srv, thread = serve(ws)
    yield srv, ws
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def open_page(browser: Any, viewport: dict[str, int], touch: bool = False) -> Any:
    context = browser.new_context(
        viewport=viewport, has_touch=touch, is_mobile=touch and viewport["width"] < 600
    )
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    pg.errors = errors
    return pg


def overflow(page: Any) -> int:
    """How far the page reaches beyond the screen's width (0: no sideways scrolling)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def reachable(page: Any, selector: str, min_size: int = 44) -> None:
    """``selector`` is on screen (scrolled to), at least ``min_size`` px each way, and
    nothing covers its centre."""
    target = page.locator(selector).first
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    assert box is not None, selector
    assert box["x"] >= -0.5 and box["x"] + box["width"] <= width + 0.5, (selector, box)
    assert box["y"] >= -0.5 and box["y"] + box["height"] <= height + 0.5, (selector, box)
    assert box["width"] >= min_size and box["height"] >= min_size, (selector, box)
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    on_top = page.evaluate(
        "([x, y, sel]) => { const el = document.elementFromPoint(x, y);"
        " return !!el && [...document.querySelectorAll(sel)].some((t) => t === el || t.contains(el)); }",
        [x, y, selector],
    )
    assert on_top, f"{selector} is covered"


def swipe(page: Any, selector: str, dx: float) -> None:
    """A quick horizontal swipe of ``dx`` px on ``selector`` (touch events)."""
    page.evaluate(
        "([sel, dx]) => { const el = document.querySelector(sel); const r = el.getBoundingClientRect();"
        " const x = r.left + r.width / 2, y = r.top + r.height / 2;"
        " const t = (cx) => new Touch({identifier: 1, target: el, clientX: cx, clientY: y});"
        " const fire = (type, touches, changed) => el.dispatchEvent("
        "   new TouchEvent(type, {touches, changedTouches: changed, bubbles: true}));"
        " fire('touchstart', [t(x)], [t(x)]); fire('touchend', [], [t(x + dx)]); }",
        [selector, dx],
    )


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def title_index(page: Any) -> int:
    return int(page.locator("#v-title").inner_text().split()[0].lstrip("#"))


@pytest.mark.parametrize("viewport", [PHONE, TABLET], ids=["phone", "tablet"])
def test_phone_and_tablet_layouts(browser: Any, fresh: tuple[GalleryServer, Path], viewport: Any) -> None:
    srv, ws = fresh
    kind = "phone" if viewport is PHONE else "tablet"
    page = open_page(browser, viewport, touch=True)
    page.goto(srv.url + "#exp=pets")
    page.wait_for_selector(".card")
    settle(page)
    assert overflow(page) == 0
    for control in (
        "#menu-btn",
        "#tab-grid",
        "#tab-stats",
        "#zoom-out",
        "#zoom-in",
        "#compare-btn",
        "#help-btn",
    ):
        reachable(page, control)
    assert page.locator("#summary").is_visible() and "24 images" in page.locator("#summary").inner_text()
    shot(page, f"{kind}-grid")
    # the side panel is a drawer: out of sight until the menu button opens it
    side = page.locator("#side").bounding_box()
    assert side is not None and side["x"] + side["width"] <= 0
    page.locator("#menu-btn").tap()
    page.wait_for_timeout(300)
    for control in (
        "#side-close",
        '#experiments li[data-name="trees"]',
        "#search",
        "#f-fav",
        "#f-stars",
        "#download",
    ):
        reachable(page, control)
    reachable(page, '#facets label:has(input[data-key="animal:1"])')
    assert overflow(page) == 0
    shot(page, f"{kind}-drawer")
    page.locator('#experiments li[data-name="trees"]').tap()  # picking an experiment closes it
    settle(page)
    assert page.locator(".card").count() == 4 and "exp=trees" in page.url
    page.wait_for_timeout(300)
    side = page.locator("#side").bounding_box()
    assert side is not None and side["x"] + side["width"] <= 0
    page.locator("#menu-btn").tap()
    page.locator('#experiments li[data-name="pets"]').tap()
    settle(page)
    # the viewer fits, its controls are reachable with a thumb, a swipe moves
    page.locator('.card[data-index="2"]').tap()
    settle(page)
    assert page.locator("#viewer").is_visible() and title_index(page) == 2
    assert overflow(page) == 0
    for control in ("#v-close", "#v-prev", "#v-next", "#v-actions button.fav", "#v-actions button.rej"):
        reachable(page, control)
    for n in range(1, 6):
        reachable(page, f'#v-actions button.star[data-n="{n}"]')
    page.locator('#v-actions button.star[data-n="4"]').tap()
    page.locator("#v-actions button.fav").tap()
    shot(page, f"{kind}-viewer")
    swipe(page, "#v-stage", -120)
    settle(page)
    assert title_index(page) == 3
    swipe(page, "#v-stage", 120)
    settle(page)
    assert title_index(page) == 2
    settle(page)
    assert store_marks(ws) == {2: (True, 4, False)}
    # compare, marked from the viewer
    page.locator("#v-actions .cmp-mark").tap()
    page.locator("#v-next").tap()
    settle(page)
    page.locator("#v-actions .cmp-mark").tap()
    settle(page)
    assert page.locator("#compare").is_visible() and page.locator(".compare-pane").count() == 2
    assert overflow(page) == 0
    reachable(page, "#c-close")
    reachable(page, '.compare-pane[data-side="1"] .actions button.fav')
    reachable(page, "#c-close")  # still there after scrolling down
    shot(page, f"{kind}-compare")
    page.locator("#c-close").tap()
    # statistics and help fit too
    page.locator("#tab-stats").tap()
    settle(page)
    assert page.locator(".stats-table").is_visible() and overflow(page) == 0
    shot(page, f"{kind}-stats")
    page.locator("#help-btn").tap()
    reachable(page, "#h-close")
    assert overflow(page) == 0
    page.locator("#h-close").tap()
    assert page.errors == []
    page.context.close()


def test_keys_in_compare_mode_and_view_switches(browser: Any, fresh: tuple[GalleryServer, Path]) -> None:
    srv, ws = fresh
    page = open_page(browser, DESKTOP)
    page.goto(srv.url + "#exp=pets")
    page.wait_for_selector(".card")
    settle(page)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("c")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("c")  # the second mark opens the comparison
    settle(page)
    panes = page.locator(".compare-pane")
    assert page.locator("#compare").is_visible() and panes.count() == 2
    focused = page.locator(".compare-pane.focused")
    assert focused.get_attribute("data-index") == "2"  # A has the focus, visibly
    assert focused.evaluate("el => getComputedStyle(el).boxShadow") != "none"
    page.keyboard.press("f")
    page.keyboard.press("ArrowRight")
    assert page.locator(".compare-pane.focused").get_attribute("data-index") == "3"
    page.keyboard.press("3")
    page.keyboard.press("x")
    page.keyboard.press("Tab")
    assert page.locator(".compare-pane.focused").get_attribute("data-index") == "2"
    page.keyboard.press("5")
    page.keyboard.press("l")
    page.keyboard.press("x")  # and back again
    page.keyboard.press("h")
    page.keyboard.press("5")  # the same number clears
    settle(page)
    assert store_marks(ws) == {2: (True, None, False), 3: (False, 3, False)}
    lit = page.locator('.compare-pane[data-side="1"] .actions button.star.lit')
    assert lit.count() == 3
    page.keyboard.press("Escape")
    assert not page.locator("#compare").is_visible()
    assert "is-fav" in classes(page, 2) and card(page, 3).get_attribute("data-stars") == "3"
    # a view switch closes the viewer instead of hiding behind it; keys go on working
    page.keyboard.press("Enter")
    assert page.locator("#viewer").is_visible()
    page.keyboard.press("s")
    assert not page.locator("#viewer").is_visible() and page.locator("#stats-view").is_visible()
    page.keyboard.press("g")
    assert page.locator("#grid-view").is_visible()
    before = selected(page)
    page.keyboard.press("ArrowRight")
    assert selected(page) == before + 1
    # the help says what works where
    page.keyboard.press("?")
    sections = page.locator("#help h3").all_inner_texts()
    assert sections == ["GRID", "VIEWER", "COMPARE", "EVERYWHERE"] or sections == [
        "Grid",
        "Viewer",
        "Compare",
        "Everywhere",
    ]
    page.keyboard.press("Escape")
    assert page.errors == []
    page.context.close()


def test_end_home_and_the_place_kept_at_any_depth(browser: Any, deep: tuple[GalleryServer, Path]) -> None:
    srv, ws = deep
    page = open_page(browser, DESKTOP)
    pages: list[str] = []
    page.on("request", lambda r: pages.append(r.url) if "/api/samples" in r.url else None)
    page.goto(srv.url + "#exp=deep")
    page.wait_for_selector(".card")
    settle(page)
    assert len(pages) == 1  # the first page, once
    assert page.locator(".card").count() == 200
    page.keyboard.press("End")
    settle(page)
    assert selected(page) == 259  # the real last image, not the last one loaded
    page.keyboard.press("Home")
    settle(page)
    assert selected(page) == 0
    page.keyboard.press("End")
    settle(page)
    page.keyboard.press("Enter")
    settle(page)
    assert title_index(page) == 259
    page.keyboard.press("Home")
    settle(page)
    assert title_index(page) == 0
    page.keyboard.press("End")
    settle(page)
    assert title_index(page) == 259
    page.keyboard.press("Escape")
    # a reload comes back to the selection, however deep
    page.goto(srv.url + "#exp=deep&sel=250")
    page.reload()
    page.wait_for_selector(".card.sel")
    settle(page)
    assert selected(page) == 250 and card(page, 250).is_visible()
    page.keyboard.press("ArrowLeft")
    assert selected(page) == 249
    page.reload()
    page.wait_for_selector(".card.sel")
    settle(page)
    assert selected(page) == 249
    # going up past the window's start reads the pages before it, in place
    assert card(page, 0).count() == 0  # the window starts further down
    for _ in range(40):
        page.keyboard.press("PageUp")
        settle(page)
        if selected(page) < columns(page):
            break
    assert selected(page) < columns(page) and card(page, 0).is_visible()  # the first row
    shown_now = shown(page)
    assert shown_now == sorted(shown_now) and len(set(shown_now)) == len(shown_now)
    # and with filters
    with Store(ws) as store:
        dogs = [
            r["index"] for r in store.records(store.require("deep")) if r["trace"]["animal"]["index"] == 1
        ]
    target = dogs[-3]
    page.goto(srv.url + f"#exp=deep&v=animal:1&sel={target}")
    page.reload()
    page.wait_for_selector(".card.sel")
    settle(page)
    assert selected(page) == target and set(shown(page)) <= set(dogs)
    page.keyboard.press("End")
    settle(page)
    assert selected(page) == dogs[-1]
    assert page.errors == []
    page.context.close()


def test_live_updates_while_a_run_adds_images(
    browser: Any, fresh: tuple[GalleryServer, Path], tmp_path: Path
) -> None:
    from stable_discovery.backends.dummy import DummyBackend
    from stable_discovery.language.program import load
    from stable_discovery.plugins import get_sampler
    from stable_discovery.run.runner import RunOptions, RunParts, run_experiment

    srv, ws = fresh
    template = tmp_path / "live.sdp"
    template.write_text("animal = a cat | a dog\nprompt = <animal> at night\n@size = 64x64\n@count = 24\n")

    class Slow(DummyBackend):
        def generate(self, batch: Any) -> list[Any]:
            time.sleep(0.35)
            return super().generate(batch)

    def run() -> None:
        with Store(ws) as store:
            run_experiment(
                store,
                load(template),
                str(template),
                RunOptions("live", backend="dummy", batch=2),
                RunParts(lambda **o: Slow(), get_sampler("random")),
            )

    page = open_page(browser, DESKTOP)
    page.goto(srv.url + "#exp=pets")
    page.wait_for_selector(".card")
    settle(page)
    page.evaluate("window.stillHere = true")  # gone if the page reloads
    runner = threading.Thread(target=run)
    runner.start()
    try:
        page.locator('#experiments li[data-name="live"]').wait_for(timeout=15_000)  # a new experiment appears
        page.locator('#experiments li[data-name="live"]').click()
        page.locator("#progress").wait_for(state="visible", timeout=15_000)
        assert "running" in page.locator("#progress").inner_text()
        first = page.locator(".card").count()
        deadline = time.monotonic() + 20
        while page.locator(".card").count() <= first and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert page.locator(".card").count() > first  # more images arrived, in place
    finally:
        runner.join(60)
    deadline = time.monotonic() + 20
    while (
        page.locator(".card").count() < 24 or page.locator("#progress").is_visible()
    ) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    settle(page)
    assert shown(page) == list(range(24))
    assert page.evaluate("window.stillHere") is True
    summary = page.locator("#summary").inner_text()
    assert "24 images" in summary and "shown" not in summary
    assert "24 images" in page.locator('#experiments li[data-name="live"]').inner_text()
    assert page.errors == []
    page.context.close()


def test_search_absent_parts_counts_download_and_archive(
    browser: Any, deep: tuple[GalleryServer, Path], tmp_path: Path
) -> None:
    import json
    import zipfile

    srv, ws = deep
    with Store(ws) as store:
        recs = {r["index"]: r for r in store.records(store.require("deep"))}
    page = open_page(browser, DESKTOP)
    page.goto(srv.url + "#exp=deep")
    page.wait_for_selector(".card")
    settle(page)
    # the filter panel names settings as the statistics do
    assert page.locator('#facets details[data-name="size"] summary').inner_text().startswith("@size")
    assert page.locator('#facets details[data-name="steps"] summary').inner_text().startswith("@steps")
    # cards say more than their number
    assert (
        page.locator('.card[data-index="0"] .idx')
        .inner_text()
        .endswith(f"{recs[0]['settings']['width']}×{recs[0]['settings']['height']}")
    )
    assert recs[0]["trace"]["animal"]["text"] in page.locator('.card[data-index="0"] .cap').inner_text()
    # counts follow the other filters
    page.locator('#facets input[data-key="animal:1"]').check()
    settle(page)
    dogs = [i for i, r in recs.items() if r["trace"]["animal"]["index"] == 1]
    wc = sum(1 for i in dogs if recs[i]["trace"].get("style", {}).get("index") == 1)
    assert page.locator('#facets input[data-key="style:1"]').locator("xpath=..").locator(
        ".n"
    ).inner_text() == str(wc)
    page.locator('#facets input[data-key="animal:1"]').uncheck()
    settle(page)
    # the images without the optional part
    page.locator('#facets input[data-key="style:-1"]').check()
    settle(page)
    bare = [i for i, r in recs.items() if "style" not in r["trace"]]
    assert shown(page) == bare[:200] and f"{len(bare)} shown" in page.locator("#summary").inner_text()
    page.locator("#clear-filters").click()
    settle(page)
    page.keyboard.press("s")
    settle(page)
    page.locator('.stats-table tbody tr[data-key="style:-1"]').click()  # an (absent) row filters too
    settle(page)
    assert page.locator("#grid-view").is_visible() and shown(page) == bare[:200]
    page.locator("#clear-filters").click()
    settle(page)
    # words of the prompt
    page.locator("#search").fill("watercolour FOX")
    page.wait_for_timeout(400)
    settle(page)
    foxes = [i for i, r in recs.items() if "watercolour" in r["prompt"] and "fox" in r["prompt"]]
    assert shown(page) == foxes and "q=watercolour+FOX" in page.url
    page.reload()
    page.wait_for_selector(".card")
    settle(page)
    assert shown(page) == foxes and page.locator("#search").input_value() == "watercolour FOX"
    # download what is shown
    with page.expect_download() as info:
        page.locator("#download").click()
    target = tmp_path / "shown.zip"
    info.value.save_as(target)
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        meta = [json.loads(line) for line in archive.read("metadata.jsonl").decode().splitlines()]
    assert names == [recs[i]["file"] for i in foxes] + ["metadata.jsonl"]
    assert [m["index"] for m in meta] == foxes
    page.locator("#clear-filters").click()
    settle(page)
    # archive: out of the list once another experiment is open, back with "show archived"
    page.locator("#archive-btn").click()
    settle(page)
    with Store(ws) as store:
        assert store.require("deep").archived
    page.locator('#experiments li[data-name="small"]').click()
    settle(page)
    assert page.locator('#experiments li[data-name="deep"]').count() == 0
    page.locator("#show-archived").check()
    assert "archived" in page.locator('#experiments li[data-name="deep"]').inner_text()
    page.locator('#experiments li[data-name="deep"]').click()
    settle(page)
    page.locator("#archive-btn").click()  # unarchive
    settle(page)
    with Store(ws) as store:
        assert not store.require("deep").archived
    page.locator("#show-archived").uncheck()
    assert page.errors == []
    page.context.close()


INLINE = """\
prompt = a {red|green|blue} ball[, at night], {2$$ and $$a hat|a bell|boots}, __weather__
@size = 64x64
@count = 60
@seed = 3
"""


def test_filters_and_stats_on_inline_choices_and_wildcard_lines(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every traced variable is a filter: an inline choice's value, a wildcard's line, a
    multi-select item's absence; the statistics' rows filter the same way."""
    root = tmp_path_factory.mktemp("gallery-inline")
    (root / "inline.sdp").write_text(INLINE)
    (root / "wildcards").mkdir()
    (root / "wildcards" / "weather.txt").write_text("sunny\nrainy\nfoggy\n")
    ws = root / "ws"
    assert main(["run", str(root / "inline.sdp"), "--backend", "dummy", "--workspace", str(ws)]) == 0
    with Store(ws) as store:
        exp = store.require("inline")
        recs = {r["index"]: r for r in store.records(exp)}
        store.rate(exp, [i for i, r in recs.items() if "green" in r["prompt"]][:8], favourite=True)
    srv, thread = serve(ws)
    try:
        page = open_page(browser, DESKTOP)
        page.goto(srv.url + "#exp=inline")
        page.wait_for_selector(".card")
        settle(page)
        summary = page.locator('#facets details[data-name="prompt{1}"] summary').inner_text()
        assert summary.startswith("prompt{1}") and "choice" in summary
        greens = [i for i, r in recs.items() if r["trace"]["prompt{1}"]["text"] == "green"]
        page.locator('#facets input[data-key="prompt{1}:1"]').check()
        settle(page)
        assert shown(page) == greens and greens
        page.locator("#clear-filters").click()
        settle(page)
        foggy = [i for i, r in recs.items() if r["trace"]["__weather__"]["text"] == "foggy"]
        page.locator('#facets input[data-key="__weather__:2"]').check()
        settle(page)
        assert shown(page) == foggy and foggy
        page.locator("#clear-filters").click()
        settle(page)
        no_bell = [i for i, r in recs.items() if "prompt{2}+a bell" not in r["trace"]]
        page.locator('#facets input[data-key="prompt{2}+a bell:-1"]').check()
        settle(page)
        assert shown(page) == no_bell and no_bell
        page.reload()  # names with { } + and spaces survive the URL
        page.wait_for_selector(".card")
        settle(page)
        assert page.locator('#facets input[data-key="prompt{2}+a bell:-1"]').is_checked()
        assert shown(page) == no_bell
        page.locator("#clear-filters").click()
        settle(page)
        page.keyboard.press("s")
        settle(page)
        page.locator('.stats-table tbody tr[data-key="prompt{1}:1"]').click()  # green's row
        settle(page)
        assert page.locator("#grid-view").is_visible() and shown(page) == greens
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "inline-filters-desktop.png"), full_page=False)
        assert page.errors == []
        page.context.close()
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)
