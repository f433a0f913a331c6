"""Statistics on favourites: planted effects are found, null experiments flag nothing,
the interval, test and correction match known values; the CLI (stats, fav, rate, reject)."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
from PIL import Image

from stable_discovery.analysis.stats import (
    ABSENT,
    benjamini_hochberg,
    experiment_stats,
    fisher_greater,
    plot,
    value_stats,
    wilson,
)
from stable_discovery.cli.main import main
from stable_discovery.store.database import Store
from tests.helpers import make_experiment, rate_by

TEMPLATE = """\
# a planted-effect experiment
colour = red | green | 2:: blue | yellow
animal = cat | dog | fox
style  = oil painting | watercolour
prompt = a <colour> <animal>[, <style>]
@steps = 20 | 30
@seed  = 3
"""


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def store(ws: Path):
    with Store(ws) as s:
        yield s


# ---------------------------------------------------------------------------------------
# the statistics against known values


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (5, 10, 0.236593, 0.763407),
        (0, 10, 0.0, 0.277530),
        (10, 10, 0.722470, 1.0),
        (1, 100, 0.001767, 0.054493),
        (60, 200, 0.240746, 0.366791),
    ],
)
def test_wilson_interval_known_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=1e-5)
    assert hi == pytest.approx(high, abs=1e-5)


def test_wilson_without_images_is_uninformative() -> None:
    assert wilson(0, 0) == (0.0, 1.0)


def test_fisher_exact_known_values() -> None:
    # Fisher's lady tasting tea: 8 cups, 4 with milk first, 3 of her 4 picks right
    assert fisher_greater(3, 4, 4, 8) == pytest.approx(17 / 70)
    assert fisher_greater(4, 4, 4, 8) == pytest.approx(1 / 70)
    assert fisher_greater(0, 4, 4, 8) == 1.0
    assert fisher_greater(0, 0, 10, 100) == 1.0


def test_fisher_exact_matches_the_hypergeometric_sum() -> None:
    rng = random.Random(1)
    for _ in range(200):
        N = rng.randint(1, 60)
        K = rng.randint(0, N)
        n = rng.randint(0, N)
        lo, hi = max(0, n + K - N), min(n, K)
        k = rng.randint(lo, hi)
        exact = sum(math.comb(K, x) * math.comb(N - K, n - x) for x in range(k, hi + 1)) / math.comb(N, n)
        assert fisher_greater(k, n, K, N) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_fisher_exact_is_fast_and_finite_for_large_tables() -> None:
    p = fisher_greater(300, 16_000, 1_000, 100_000)
    assert 0.0 <= p < 1e-10


def test_benjamini_hochberg_known_values() -> None:
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # R: p.adjust(c(0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205), "BH")
    assert benjamini_hochberg([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205]) == pytest.approx(
        [0.008, 0.032, 0.0672, 0.0672, 0.0672, 0.08, 0.0845714, 0.205], abs=1e-6
    )
    assert benjamini_hochberg([]) == []
    assert benjamini_hochberg([0.9, 1.0]) == [1.0, 1.0]


# ---------------------------------------------------------------------------------------
# planted effects


def test_planted_effect_is_ranked_first_and_flagged(store: Store) -> None:
    make_experiment(store, "planted", TEMPLATE, 2000, rate_by({("colour", "green"): 0.30}, 0.08), seed=3)
    rows = value_stats(store, "planted")
    top = rows[0]
    assert (top.name, top.text, top.kind) == ("colour", "green", "slot")
    assert top.significant and top.q_value < 1e-6
    assert top.lift > 2
    assert [r for r in rows if r.significant] == [top]
    lows = [r.low for r in rows]
    assert lows == sorted(lows, reverse=True)


@pytest.mark.parametrize("rule_seed", [1, 2, 3])
def test_no_planted_effect_flags_nothing(store: Store, rule_seed: int) -> None:
    make_experiment(store, "null", TEMPLATE, 2000, rate_by({}, 0.10), seed=rule_seed, rule_seed=rule_seed)
    rows = value_stats(store, "null")
    assert rows and not any(r.significant for r in rows)
    assert min(r.q_value for r in rows) > 0.05


def test_a_setting_value_is_found_too(store: Store) -> None:
    make_experiment(store, "steps", TEMPLATE, 1500, rate_by({("steps", "30"): 0.25}, 0.05))
    top = value_stats(store, "steps")[0]
    assert (top.name, top.kind, top.text, top.significant) == ("steps", "setting", "30", True)
    assert top.label == "@steps: 30"


def test_optional_slots_have_an_absent_row(store: Store) -> None:
    make_experiment(store, "absent", TEMPLATE, 1000, rate_by({}, 0.1))
    report = experiment_stats(store, "absent")
    groups = report.by_name()
    absent = groups["style"][-1]
    assert absent.absent and absent.text == ABSENT and absent.index == -1
    assert absent.label == f"style {ABSENT}"
    assert sum(r.images for r in groups["style"].values()) == report.images
    assert sum(r.favourites for r in groups["style"].values()) == report.favourites
    for name in ("colour", "animal", "steps"):  # always used: no absent row
        assert -1 not in groups[name]
        assert sum(r.images for r in groups[name].values()) == report.images


def test_a_suffix_that_helps_shows_in_the_absent_row(store: Store) -> None:
    rule = rate_by({("style", "oil painting"): 0.3, ("style", "watercolour"): 0.3}, 0.05)
    make_experiment(store, "suffix", TEMPLATE, 1500, rule)
    groups = experiment_stats(store, "suffix").by_name()
    absent = groups["style"][-1]
    assert absent.rate < 0.08 and absent.high < experiment_stats(store, "suffix").base_rate


def test_rejected_images_are_left_out_and_counted(store: Store) -> None:
    def rejected(sample, rng):
        return sample.trace["colour"].text == "yellow" and sample.index % 2 == 0

    make_experiment(store, "rej", TEMPLATE, 800, rate_by({}, 0.2), rejected=rejected)
    report = experiment_stats(store, "rej")
    exp = store.require("rej")
    assert report.rejected > 0
    assert report.images == exp.done - report.rejected
    yellow = report.by_name()["colour"][3]
    assert yellow.rejected == report.rejected
    # favourites that were also rejected do not count
    assert report.favourites == sum(
        1 for rec in store.records(exp) if rec["rating"]["favourite"] and not rec["rating"]["rejected"]
    )
    both = experiment_stats(store, "rej", include_rejected=True)
    assert both.images == exp.done and both.favourites == report.favourites
    assert both.by_name()["colour"][3].images == yellow.images + yellow.rejected


def test_stars_count_as_winners_when_asked(store: Store) -> None:
    exp = make_experiment(store, "stars", TEMPLATE, 200, rate_by({}, 0.0))
    store.rate(exp, [1, 2, 3], stars=4)
    store.rate(exp, [4], stars=2)
    assert experiment_stats(store, "stars").favourites == 0
    assert experiment_stats(store, "stars", min_stars=4).favourites == 3
    assert experiment_stats(store, "stars", min_stars=2).favourites == 4


def test_an_experiment_without_favourites(store: Store) -> None:
    make_experiment(store, "none", TEMPLATE, 50, rate_by({}, 0.0))
    report = experiment_stats(store, "none")
    assert report.base_rate == 0 and report.favourites == 0
    assert all(r.lift == 1.0 and r.p_value == 1.0 and not r.significant for r in report.values)


def test_to_dict_is_json_ready(store: Store) -> None:
    make_experiment(store, "json", TEMPLATE, 300, rate_by({("colour", "green"): 0.3}, 0.05))
    report = experiment_stats(store, "json")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["experiment"] == "json" and len(data["values"]) == len(report.values)
    assert set(data["values"][0]) == {
        "name",
        "kind",
        "index",
        "text",
        "images",
        "favourites",
        "rejected",
        "rate",
        "low",
        "high",
        "lift",
        "p_value",
        "q_value",
        "significant",
        "absent",
    }


# ---------------------------------------------------------------------------------------
# the command line


def _planted(ws: Path) -> None:
    with Store(ws) as store:
        make_experiment(store, "planted", TEMPLATE, 2000, rate_by({("colour", "green"): 0.30}, 0.08), seed=3)


def test_sdp_stats_table(ws: Path, capsys) -> None:
    _planted(ws)
    assert main(["stats", "planted", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("planted: 2,000 images;") and "base rate" in lines[0]
    assert lines[1].split() == [
        "VARIABLE",
        "VALUE",
        "IMAGES",
        "FAVS",
        "RATE",
        "95%",
        "INTERVAL",
        "LIFT",
        "SIG",
    ]
    assert lines[2].split()[:2] == ["colour", "green"] and lines[2].endswith("*")
    assert re.search(r"\nstyle +\(absent\)", out) and "@steps" in out
    assert sum(1 for line in lines[2:-1] if line.endswith("*")) == 1
    assert "Benjamini-Hochberg" in lines[-1]


def test_sdp_stats_json(ws: Path, capsys) -> None:
    _planted(ws)
    assert main(["stats", "planted", "--json", "--workspace", str(ws)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["images"] == 2000 and data["favourites"] > 0
    assert data["base_rate"] == pytest.approx(data["favourites"] / data["images"])
    top = data["values"][0]
    assert (top["name"], top["text"], top["significant"]) == ("colour", "green", True)
    lows = [v["low"] for v in data["values"]]
    assert lows == sorted(lows, reverse=True)


def test_sdp_stats_plot_is_a_png(ws: Path, tmp_path: Path, capsys) -> None:
    _planted(ws)
    target = tmp_path / "out" / "stats.png"
    assert main(["stats", "planted", "--plot", str(target), "--workspace", str(ws)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(target) as img:
        img.verify()
    with Image.open(target) as img:
        assert img.format == "PNG" and img.width >= 800 and img.height > 12 * 24
    assert "wrote" in capsys.readouterr().err


def test_plot_accepts_rows_and_limits_them(store: Store, tmp_path: Path) -> None:
    make_experiment(store, "rows", TEMPLATE, 300, rate_by({}, 0.1))
    rows = value_stats(store, "rows")
    few = plot(rows, tmp_path / "few.png", limit=3)
    many = plot(rows, tmp_path / "all.png", base_rate=0.1, title="t")
    with Image.open(few) as a, Image.open(many) as b:
        assert a.height < b.height
    empty = plot([], tmp_path / "empty.png")
    assert empty.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["stats", "nope"], "no experiment named 'nope'"),
        (["stats", "planted", "--plot", "x.jpg"], "--plot writes a PNG"),
        (["stats", "planted", "--min-stars", "7"], "--min-stars goes from 1 to 5"),
    ],
)
def test_sdp_stats_errors(ws: Path, capsys, argv: list[str], message: str) -> None:
    _planted(ws)
    assert main([*argv, "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_sdp_stats_without_a_store(tmp_path: Path, capsys) -> None:
    assert main(["stats", "x", "--workspace", str(tmp_path / "missing")]) == 2
    assert "no run store" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


# ---------------------------------------------------------------------------------------
# sdp fav / rate / reject on a real (dummy-backend) run, then stats over it


@pytest.fixture
def dummy_run(tmp_path: Path, capsys) -> Path:
    tmpl = tmp_path / "balls.sdp"
    tmpl.write_text(
        "colour = red | green | blue\nprompt = a <colour> ball[, <scale>]\n"
        "scale = small | large\n@size = 64x64\n@count = 12\n@seed = 5\n"
    )
    ws = tmp_path / "ws"
    assert main(["run", str(tmpl), "--backend", "dummy", "--workspace", str(ws)]) == 0
    capsys.readouterr()
    return ws


def test_fav_rate_reject_from_the_command_line(dummy_run: Path, capsys) -> None:
    ws = ["--workspace", str(dummy_run)]
    assert main(["fav", "balls", "0", "3", "5", *ws]) == 0
    assert "marked 3 favourites in balls" in capsys.readouterr().out
    assert main(["fav", "balls", "5", "--off", *ws]) == 0
    assert main(["rate", "balls", "3", "4", *ws]) == 0
    assert "balls #3: 4 stars" in capsys.readouterr().out
    assert main(["rate", "balls", "7", "0", *ws]) == 0
    assert main(["reject", "balls", "8", "9", *ws]) == 0
    assert "rejected 2 images in balls" in capsys.readouterr().out
    assert main(["reject", "balls", "9", "--off", *ws]) == 0
    capsys.readouterr()
    with Store(dummy_run) as store:
        exp = store.require("balls")
        ratings = {i: store.rating(exp, i) for i in range(12)}
    assert [i for i, r in ratings.items() if r["favourite"]] == [0, 3]
    assert ratings[3]["stars"] == 4 and ratings[7]["stars"] is None
    assert [i for i, r in ratings.items() if r["rejected"]] == [8]
    assert main(["stats", "balls", "--json", *ws]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["images"], data["favourites"], data["rejected"]) == (11, 2, 1)
    assert sum(v["images"] for v in data["values"] if v["name"] == "colour") == 11
    assert main(["stats", "balls", "--min-stars", "4", "--json", *ws]) == 0
    assert json.loads(capsys.readouterr().out)["favourites"] == 2  # #3 is both


def _no_favourites(ws: Path) -> None:
    with Store(ws) as store:
        exp = store.require("balls")
        assert not any(
            store.rating(exp, i)["favourite"] or store.rating(exp, i)["rejected"] for i in range(12)
        )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fav", "nope", "1"], "no experiment named 'nope'"),
        (["fav", "ball", "1"], "did you mean 'balls'?"),
        (["fav", "balls", "40"], "'balls' has no generated sample 40; it has 12 of 12"),
        (["fav", "balls", "1", "40"], "'balls' has no generated sample 40"),
        (["reject", "balls", "12", "13"], "has no generated sample 12 (nor 1 more)"),
        (["rate", "balls", "99", "3"], "has no generated sample 99"),
        (["rate", "nope", "1", "3"], "no experiment named 'nope'"),
    ],
)
def test_rating_errors_exit_2_with_a_message(dummy_run: Path, capsys, argv, message) -> None:
    assert main([*argv, "--workspace", str(dummy_run)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert captured.out == ""
    _no_favourites(dummy_run)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["rate", "balls", "1", "6"], "stars are 1 to 5 (0 clears), not 6"),
        (["rate", "balls", "1", "-2"], "stars are 1 to 5 (0 clears), not -2"),
        (["rate", "balls", "1", "x"], "stars are 1 to 5 (0 clears), not 'x'"),
        (["fav", "balls", "-1"], "expected 0 or more, got -1"),
        (["reject", "balls", "one"], "expected a whole number, got 'one'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(dummy_run: Path, capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--workspace", str(dummy_run)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    _no_favourites(dummy_run)


def test_rating_from_a_subprocess_has_no_traceback(dummy_run: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "stable_discovery", "rate", "balls", "3", "9", "--workspace", str(dummy_run)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "stars are 1 to 5" in proc.stderr and "Traceback" not in proc.stderr


def test_stats_on_every_combination_of_a_small_run(tmp_path: Path) -> None:
    # a combinatorial experiment: every value equally often, favourites on one animal
    t = "animal = cat | dog | fox | owl\nplace = here | there | everywhere\nprompt = a <animal> <place>\n"
    with Store(tmp_path / "ws") as store:
        exp = make_experiment(store, "grid", t, 12, rate_by({}, 0.0), sampler="combinatorial")
        dogs = [rec["index"] for rec in store.records(exp) if rec["trace"]["animal"]["text"] == "dog"]
        store.rate(exp, dogs, favourite=True)
        groups = experiment_stats(store, "grid").by_name()
    assert {i: (r.images, r.favourites) for i, r in groups["animal"].items()} == {
        0: (3, 0),
        1: (3, 3),
        2: (3, 0),
        3: (3, 0),
    }
    assert all(r.images == 4 and r.favourites == 1 for r in groups["place"].values())
    assert groups["animal"][1].p_value == pytest.approx(1 / math.comb(12, 3))
