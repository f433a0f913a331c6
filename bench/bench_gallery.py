"""Gallery server time over an experiment of 100,000 samples.

    python bench/bench_gallery.py [--samples 100000] [--repeat 15] [--out bench/results/gallery.md]

A fresh store gets one experiment whose rows are inserted directly through SQL (samples,
choices for four slots and one sampled setting, 1,000 favourites, 2,000 star ratings,
500 rejections); its files point at 256 real 512x512 PNGs, reused. The gallery server
runs in this process, in a thread, and is asked over HTTP on one keep-alive connection.

Measured, each the median (and best) of ``--repeat`` passes:

- a page of 200 thumbnails: the JSON page (first page, with its total) and the 200
  thumbnail requests it leads to, thumbnails already cached;
- filtered queries: the first page (200 items and the total) under value and mark filters,
  words of the prompt, the last page (``End``) and a window opened deep in the list;
- value counts under filters (``/api/facets`` with filters: each value's count follows the
  other filters);
- following a run: the page's poll (``/api/experiments`` with ``If-None-Match``, then
  ``/api/samples?since=…`` when something changed) while nothing happens and while a
  writer records 20 images a second, and what the polling costs that writer.

"Server" sums the ``Server-Timing`` durations the server reports (from the start of the
handler to the response headers: opening the store, SQL, JSON, reading the file);
"wall" is what the client saw, HTTP parsing and the loopback included.
Target (issue 4): under 100 ms each, server side.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _template_bench import cpu_model  # bench/ is on the path when run as a script

from stable_discovery.gallery.server import make_server
from stable_discovery.run.files import ExperimentLock
from stable_discovery.sampling.sample import Chosen, Sample
from stable_discovery.store.database import ExperimentSpec, Store

SLOTS = {  # name → number of alternatives
    "subject": 12,
    "place": 8,
    "style": 6,
    "palette": 4,
}
SETTING = ("steps", (20, 30, 40))
FILES = 256
NAME = "big"
_TIMING = re.compile(r"dur=([0-9.]+)")


def machine() -> str:
    cpu = cpu_model()
    import sqlite3

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {cpu}, Linux {platform.release()}; "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; commit {commit}; "
        f"load average at start {load[0]:.2f}"
    )


def populate(ws: Path, samples: int) -> None:
    """One experiment of ``samples`` done rows, written straight through SQL."""
    from PIL import Image, ImageDraw

    rng = random.Random(4)
    store = Store(ws)
    exp = store.open_experiment(
        ExperimentSpec(
            name=NAME,
            template_path=None,
            template_text="(bench)",
            wildcards_hash="",
            sampler="random",
            seed=0,
            count=samples,
            backend="dummy",
            overrides={},
        )
    )
    folder = ws / NAME
    folder.mkdir(exist_ok=True)
    for i in range(FILES):
        im = Image.new("RGB", (512, 512), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x, y, r = rng.randrange(512), rng.randrange(512), rng.randrange(20, 120)
            draw.ellipse(
                (x - r, y - r, x + r, y + r),
                fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)),
            )
        im.save(folder / f"{i:05d}.png")
    now = time.time()
    sample_rows, choice_rows = [], []
    for idx in range(samples):
        picks = {name: rng.randrange(n) for name, n in SLOTS.items()}
        step = rng.randrange(len(SETTING[1]))
        prompt = ", ".join(f"{name} {choice}" for name, choice in picks.items())
        settings = json.dumps({"steps": SETTING[1][step], "guidance": 7.5, "width": 512, "height": 512})
        sample_rows.append((exp.id, idx, prompt, "blurry", settings, idx, f"{idx % FILES:05d}.png", now))
        for name, choice in picks.items():
            choice_rows.append((exp.id, idx, name, choice, f"{name} {choice}"))
        choice_rows.append((exp.id, idx, SETTING[0], step, str(SETTING[1][step])))
    db = store.db
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO samples (experiment_id, idx, prompt, negative, settings, seed, status, file, "
        "batch_size, seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, 'done', ?, 1, 0.1, ?)",
        sample_rows,
    )
    db.executemany(
        "INSERT INTO choices (experiment_id, idx, name, choice, text) VALUES (?, ?, ?, ?, ?)", choice_rows
    )
    picked = rng.sample(range(samples), 3500)
    rating_rows = []
    for k, idx in enumerate(picked):
        fav = 1 if k < 1000 else 0
        stars = rng.randrange(1, 6) if 500 <= k < 2500 else None
        rejected = 1 if k >= 3000 else 0
        rating_rows.append((exp.id, idx, fav, stars, rejected, now))
    db.executemany(
        "INSERT INTO ratings (experiment_id, idx, favourite, stars, rejected, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        rating_rows,
    )
    db.execute("COMMIT")
    store.close()


class Client:
    """One keep-alive HTTP connection that records the server's own timing."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> tuple[bytes, float]:
        status, _etag, body, ms = self.request(path)
        if status != 200:
            raise RuntimeError(f"{path}: {status} {body[:200]!r}")
        return body, ms

    def request(self, path: str, etag: str | None = None) -> tuple[int, str | None, bytes, float]:
        """(status, ETag, body, server ms) of a GET, with ``If-None-Match`` when given."""
        self.conn.request("GET", path, headers={"If-None-Match": etag} if etag else {})
        resp = self.conn.getresponse()
        body = resp.read()
        match = _TIMING.search(resp.getheader("Server-Timing") or "")
        return resp.status, resp.getheader("ETag"), body, float(match.group(1)) if match else float("nan")


class Writer(threading.Thread):
    """Records ``rate`` images a second into the experiment, in batches, as a run does
    (under the experiment's lock); the time each batch's commit took."""

    def __init__(self, ws: Path, start_index: int, rate: float = 20.0, batch: int = 4) -> None:
        super().__init__(daemon=True)
        self.ws, self.index, self.period, self.batch = ws, start_index, batch / rate, batch
        self.stop = threading.Event()
        self.commits: list[float] = []
        self.written = 0
        self.started = self.seconds = 0.0

    def run(self) -> None:
        store = Store(self.ws)
        exp = store.require(NAME)
        with ExperimentLock(self.ws / NAME, NAME):
            self.started = due = time.perf_counter()
            while not self.stop.is_set():
                items = [
                    (_sample(self.index + k), f"{(self.index + k) % FILES:05d}.png", 0.05, self.batch)
                    for k in range(self.batch)
                ]
                t0 = time.perf_counter()
                store.record_done(exp.id, items)
                self.commits.append((time.perf_counter() - t0) * 1000)
                self.index += self.batch
                self.written += self.batch
                due += self.period
                time.sleep(max(0.0, due - time.perf_counter()))
            self.seconds = time.perf_counter() - self.started
        store.close()


def _sample(idx: int) -> Sample:
    rng = random.Random(idx)
    picks = {name: rng.randrange(n) for name, n in SLOTS.items()}
    step = rng.randrange(len(SETTING[1]))
    trace = {name: Chosen(c, f"{name} {c}") for name, c in picks.items()}
    trace[SETTING[0]] = Chosen(step, str(SETTING[1][step]))
    settings = {"steps": SETTING[1][step], "guidance": 7.5, "width": 512, "height": 512}
    return Sample(idx, ", ".join(f"{n} {c}" for n, c in picks.items()), "blurry", settings, idx, trace)


def poll_cycle(client: Client, etag: str | None, stamp: float) -> tuple[str | None, float, float, int]:
    """One poll of the page: the experiment list (304 when unchanged), then what was added
    since ``stamp`` when it changed. (new ETag, new stamp, server ms, images added)."""
    status, new_etag, _body, ms = client.request("/api/experiments", etag)
    if status == 304:
        return etag, stamp, ms, 0
    body, more_ms = client.get(f"/api/samples?experiment={NAME}&since={stamp!r}&limit=1000")
    data = json.loads(body)
    return new_etag, data["stamp"], ms + more_ms, data["added"]


def live_costs(ws: Path, client: Client, samples: int) -> dict[str, float]:
    """What following a run costs: idle polls, polls while 20 images/s are recorded, and the
    recording's commit times without and with the page polling (every second here; the
    page polls every 2.5 s)."""
    store = Store(ws)
    store.db.execute("UPDATE experiments SET count = ? WHERE name = ?", (samples * 2, NAME))
    store.close()
    etag = client.request("/api/experiments")[1]
    stamp = json.loads(client.get(f"/api/samples?experiment={NAME}&limit=1")[0])["stamp"]
    idle = []
    for _ in range(20):
        etag, stamp, ms, _n = poll_cycle(client, etag, stamp)
        idle.append(ms)
    alone = Writer(ws, samples)
    alone.start()
    time.sleep(6)
    alone.stop.set()
    alone.join()
    etag, stamp = None, json.loads(client.get(f"/api/samples?experiment={NAME}&limit=1")[0])["stamp"]
    watched = Writer(ws, alone.index)
    watched.start()
    polls, added = [], []
    t_end = time.perf_counter() + 12
    while time.perf_counter() < t_end:
        etag, stamp, ms, n = poll_cycle(client, etag, stamp)
        polls.append(ms)
        added.append(n)
        time.sleep(1.0)
    watched.stop.set()
    watched.join()
    return {
        "idle_poll": statistics.median(idle),
        "run_poll": statistics.median(polls),
        "run_poll_max": max(polls),
        "added": statistics.median(added),
        "commit_alone": statistics.median(alone.commits),
        "commit_watched": statistics.median(watched.commits),
        "rate_alone": alone.written / alone.seconds,
        "rate_watched": watched.written / watched.seconds,
    }


def measure(repeat: int, once: Callable[[], float]) -> tuple[float, float, float, float]:
    """(server median, server best, wall median, wall best) in ms over ``repeat`` passes."""
    once()  # warm-up
    server, wall = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        server.append(once())
        wall.append((time.perf_counter() - t0) * 1000)
    return statistics.median(server), min(server), statistics.median(wall), min(wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    parser.add_argument("--keep", type=Path, help="build the workspace here and keep it")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sdp-bench-gallery-"))
    ws = args.keep or tmp / "ws"
    try:
        t0 = time.perf_counter()
        if not (ws / "discovery.db").exists():
            populate(ws, args.samples)
        built = time.perf_counter() - t0
        server = make_server(ws, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        client = Client(server.port)
        base = f"/api/samples?experiment={NAME}&limit=200"

        def page_of_thumbnails(query: str) -> Callable[[], float]:
            def once() -> float:
                body, total = client.get(base + query)
                for item in json.loads(body)["items"]:
                    _, ms = client.get(f"/thumb/{NAME}/{item['file']}?v=1")
                    total += ms
                return total

            return once

        def query_only(query: str) -> Callable[[], float]:
            def once() -> float:
                body, ms = client.get(base + query)
                data = json.loads(body)
                assert "total" in data or "after=" in query
                return ms

            return once

        rows: list[tuple[str, str, tuple[float, float, float, float], str]] = []

        def run(label: str, query: str, fn: Callable[[str], Callable[[], float]], what: str) -> None:
            body, _ = client.get(base + query)
            data = json.loads(body)
            matches = data.get("total")
            note = f"{matches:,} match" if matches is not None else f"{len(data['items'])} items"
            rows.append((label, f"`{query or '(none)'}`", measure(args.repeat, fn(query)), f"{what}; {note}"))

        run("page of 200 thumbnails", "", page_of_thumbnails, "JSON page + 200 thumbnails")
        run("page of 200 thumbnails, deep", "&after=60000", page_of_thumbnails, "JSON page + 200 thumbnails")
        run("filtered: one slot value", "&v=subject:3", query_only, "first page + total")
        run(
            "filtered: values of two slots",
            "&v=subject:3&v=subject:5&v=style:2",
            query_only,
            "first page + total",
        )
        run(
            "filtered: value, setting and marks",
            "&v=place:1&v=steps:2&rejected=0&fav=0",
            query_only,
            "first page + total",
        )
        run("filtered: favourites", "&fav=1", query_only, "first page + total")
        run("filtered: favourites of one value", "&fav=1&v=style:4", query_only, "first page + total")
        run("filtered: 4+ stars, not rejected", "&stars=4&rejected=0", query_only, "first page + total")
        run(
            "filtered: rare combination",
            "&v=subject:3&v=place:2&v=style:1&v=palette:0&v=steps:0&stars=none",
            query_only,
            "first page + total",
        )
        run("words of the prompt", "&q=place%207%20palette", query_only, "first page + total")
        run("words and a value", "&q=palette%202&v=style:4", query_only, "first page + total")
        run("the last page (End)", "&before=end&total=1", query_only, "last page + total")
        run("a window deep in the list", "&after=74999&total=1", query_only, "page + total")

        facet_rows = []
        for query in (
            "",
            "&v=subject:3",
            "&fav=1",
            "&rejected=0",
            "&v=subject:3&v=style:2&fav=0",
            "&q=palette%202",
        ):
            url = f"/api/facets?experiment={NAME}{query}"
            facet_rows.append((query or "(none)", measure(args.repeat, lambda url=url: client.get(url)[1])))

        # the rest of a session, for the record: facets (uncached), a record, a rating
        facets_ms = []
        for _ in range(3):
            server._facets.clear()
            facets_ms.append(client.get(f"/api/facets?experiment={NAME}")[1])
        record_ms = [client.get(f"/api/record?experiment={NAME}&index=54321")[1] for _ in range(5)]
        rate_ms = []
        for k in range(5):
            body = json.dumps({"experiment": NAME, "index": 777 + k, "favourite": True}).encode()
            client.conn.request("POST", "/api/rate", body, {"Content-Type": "application/json"})
            resp = client.conn.getresponse()
            resp.read()
            match = _TIMING.search(resp.getheader("Server-Timing") or "")
            rate_ms.append(float(match.group(1)) if match else float("nan"))
        live = live_costs(ws, client, args.samples)
        server.shutdown()
        server.server_close()

        lines = [
            "# Gallery server time over 100,000 samples"
            if args.samples == 100_000
            else f"# Gallery server time over {args.samples:,} samples",
            "",
            f"Machine: {machine()}.",
            "",
            f"Command: `python bench/bench_gallery.py --samples {args.samples} --repeat {args.repeat}"
            + (f" --out {args.out}`" if args.out else "`"),
            "",
            f"One experiment of {args.samples:,} done samples inserted through SQL ({built:.1f} s to "
            f"build): four slots ({', '.join(f'{k} x{v}' for k, v in SLOTS.items())}) and a sampled setting "
            "(steps x3) in `choices`, 1,000 favourites, 2,000 star ratings and 500 rejections; files point "
            f"at {FILES} real 512x512 PNGs, reused, with their 320 px thumbnails cached. Server and client "
            "in one process, one keep-alive connection, requests one after another (a browser sends six at "
            f"a time). Median and best of {args.repeat} passes after a warm-up. Server: the sum of the "
            "`Server-Timing` durations of every request in the pass; wall: what the client saw. Target: "
            "under 100 ms, server side.",
            "",
            "| what | filters | server ms (median) | server ms (best) | wall ms (median) "
            "| requests, matches |",
            "|---|---|---:|---:|---:|---|",
        ]
        for label, query, (smed, sbest, wmed, _wbest), note in rows:
            lines.append(f"| {label} | {query} | {smed:.1f} | {sbest:.1f} | {wmed:.1f} | {note} |")
        lines += [
            "",
            "Value counts (`/api/facets`): without filters they are cached per experiment and "
            "recording; under filters each value's count follows the other filters and is computed "
            "at each request, beside the first page (the page does not wait for it).",
            "",
            "| filters | server ms (median) | server ms (best) |",
            "|---|---:|---:|",
        ]
        for query, (smed, sbest, _wmed, _wbest) in facet_rows:
            lines.append(f"| `{query}` | {smed:.1f} | {sbest:.1f} |")
        lines += [
            "",
            "Following a run (the page polls every 2.5 s: `/api/experiments` with `If-None-Match`, then "
            "`/api/samples?since=STAMP` when the list changed; here one poll a second, over the "
            f"{args.samples:,}-sample experiment that a writer extends at 20 images/s in batches of 4, "
            "under the experiment's lock, as `sdp run` does):",
            "",
            f"- a poll while nothing changes (304 Not Modified): {live['idle_poll']:.2f} ms server;",
            f"- a poll while the run writes: {live['run_poll']:.1f} ms server (median; worst "
            f"{live['run_poll_max']:.1f} ms), bringing {live['added']:.0f} new images each;",
            f"- the writer's commits: {live['commit_alone']:.1f} ms (median) alone, "
            f"{live['commit_watched']:.1f} ms while the page polls; images recorded per second: "
            f"{live['rate_alone']:.1f} alone, {live['rate_watched']:.1f} watched.",
            "",
            "Also: facets of the experiment (uncached, once per experiment opened): "
            f"{statistics.median(facets_ms):.0f} ms; one full record: {statistics.median(record_ms):.1f} "
            f"ms; one rating (POST, through `Store.rate`): {statistics.median(rate_ms):.1f} ms (server, "
            "medians).",
            "",
            "How: every filter is answered from an index (migration `0003_gallery_indexes`: a partial "
            "covering index `choices (experiment_id, name, choice, idx) WHERE name <> ''` that only the "
            "gallery's queries opt into, and `samples (experiment_id, status, idx)`); a page's indices are "
            "found first, in index order, from the smallest value list (keyset paging on the sample index, "
            "no OFFSET), then its 200 rows are read; the total is counted once, on the first page, by "
            "intersecting the two smallest value lists and probing the rest. Pages go backwards too "
            "(`before=`, in descending index order on the same index), so `End` and a reload deep in the "
            "list open a window there instead of reading every page before it. Words of the prompt are "
            "`LIKE` conditions checked on the candidates the other filters leave. Following a run reads "
            "the samples recorded since a moment from `samples (experiment_id, created_at)` (migration "
            "`0004_archive_and_recent`). The store is not ANALYZEd, as users' stores are not. The machine "
            "is shared with other jobs: the load average above says how busy it was.",
            "",
        ]
        report = "\n".join(lines)
        print(report)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(report)
        worst = max(r[2][0] for r in rows)
        return 0 if worst < 100 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
