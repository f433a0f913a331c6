"""Every random decision of a template is a traced, learnable, refinable variable.

* planted effects on each kind of variable — an inline value, an optional part present,
  a multi-select item, a wildcard line, a nested inline value — rank first and are
  flagged; without an effect nothing is flagged (fixed seeds);
* the refined template samples the winning inline value and wildcard line more often,
  as its weights say (within sampling error), and the exploit sampler samples the same;
* experiments of one lineage pool; a value over-represented in the round with more
  favourites is not mistaken for a winner;
* names: automatic, given in the template, repeated in one sample; weighted wildcard
  lines and ``@wildcards``; ``sdp check`` lists the variables; an experiment begun before
  every decision was traced keeps recording what it did.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import pytest

from stable_discovery import plugins
from stable_discovery.analysis.refine import refine_result, wildcard_folder
from stable_discovery.analysis.stats import experiment_stats, stratified_greater
from stable_discovery.cli.main import main
from stable_discovery.errors import UsageError
from stable_discovery.language.program import load, loads
from stable_discovery.plugins import get_sampler
from stable_discovery.sampling.sample import Chosen, Sample
from stable_discovery.store.database import ExperimentSpec, Store
from tests.helpers import error, make_experiment, rate_by, write_wildcards

RANDOM = get_sampler("random")

TEMPLATE = (
    "# inline choices, an optional part, a multi-select, a wildcard, a nested choice\n"
    "prompt = a {red|green|blue|yellow} {cat|dog {small|big}}[, at night], "
    "with {2$$ and $$a hat|a scarf|boots|a bell}, __weather__\n"
    "@seed = 4\n"
)
WEATHER = ["sunny", "rainy", "foggy", "snowy"]


@pytest.fixture
def wild(tmp_path: Path) -> Path:
    return write_wildcards(tmp_path / "wildcards", {"weather": WEATHER})


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "ws") as s:
        yield s


def test_every_decision_is_a_named_variable(wild: Path) -> None:
    program = loads(TEMPLATE, wildcard_dirs=[wild])
    assert [(v.name, v.kind) for v in program.variables] == [
        ("prompt{1}", "choice"),
        ("prompt{2}", "choice"),
        ("prompt{2}{1}", "choice"),
        ("prompt[1]", "optional"),
        ("prompt{3}+a hat", "item"),
        ("prompt{3}+a scarf", "item"),
        ("prompt{3}+boots", "item"),
        ("prompt{3}+a bell", "item"),
        ("__weather__", "wildcard"),
    ]
    sample = RANDOM.sample(program, 0, 4)
    assert set(sample.trace) >= {"prompt{1}", "prompt{2}", "__weather__"}
    assert sample.trace["__weather__"].text in WEATHER


# ---------------------------------------------------------------------------------------
# planted effects


PLANTED = [
    pytest.param(("prompt{1}", "green"), 0.35, id="inline value"),
    pytest.param(("prompt[1]", ", at night"), 0.28, id="optional part present"),
    pytest.param(("prompt{3}+a bell", "a bell"), 0.3, id="multi-select item"),
    pytest.param(("__weather__", "foggy"), 0.35, id="wildcard line"),
    pytest.param(("prompt{2}{1}", "big"), 0.45, id="nested inline value"),
]


@pytest.mark.parametrize("planted, rate", PLANTED)
def test_a_planted_value_ranks_first_and_is_flagged(store: Store, wild: Path, planted, rate) -> None:
    make_experiment(store, "p", TEMPLATE, 1500, rate_by({planted: rate}, 0.08), wildcards=(wild,))
    report = experiment_stats(store, "p")
    top = report.values[0]
    assert (top.name, top.text) == planted and top.significant and not top.absent
    flagged = {(v.name, v.text) for v in report.values if v.significant}
    if planted[0] == "prompt{2}{1}":  # the dog is flagged too: it holds the big dog
        assert flagged <= {planted, ("prompt{2}", "dog {small|big}")}
    elif planted[0].startswith("prompt{3}+"):  # with the bell, the other items are picked less
        others = {(f"prompt{{3}}+{item}", "(absent)") for item in ("a hat", "a scarf", "boots")}
        assert planted in flagged and flagged <= {planted} | others
    else:
        assert flagged == {planted}
    kinds = {v.name: v.kind for v in report.values}
    assert kinds["prompt{1}"] == "choice" and kinds["__weather__"] == "wildcard"
    assert kinds["prompt[1]"] == "optional" and kinds["prompt{3}+a bell"] == "item"
    # the optional part and each item have a row for their absence
    assert {("prompt[1]", True), ("prompt{3}+a bell", True)} <= {(v.name, v.absent) for v in report.values}


def test_no_effect_flags_nothing(store: Store, wild: Path) -> None:
    make_experiment(store, "null", TEMPLATE, 1500, rate_by({}, 0.12), wildcards=(wild,))
    report = experiment_stats(store, "null")
    assert report.tested > 20
    assert not [v.label for v in report.values if v.significant]


def test_stats_json_names_kinds_and_texts(store: Store, wild: Path, capsys) -> None:
    make_experiment(store, "p", TEMPLATE, 300, rate_by({("prompt{1}", "green"): 0.5}, 0.1), wildcards=(wild,))
    assert main(["stats", "p", "--json", "--workspace", str(store.workspace)]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)["values"]
    got = {(r["name"], r["kind"], r["text"]) for r in rows if not r["absent"]}
    assert ("prompt{1}", "choice", "green") in got
    assert ("__weather__", "wildcard", "foggy") in got
    assert ("prompt{3}+boots", "item", "boots") in got
    assert ("prompt[1]", "optional", ", at night") in got


# ---------------------------------------------------------------------------------------
# refine and exploit


def _share(samples: list[Sample], name: str, text: str) -> float:
    return sum(1 for s in samples if name in s.trace and s.trace[name].text == text) / len(samples)


def _close(observed: float, expected: float, n: int) -> bool:
    sd = math.sqrt(expected * (1 - expected) / n)
    return abs(observed - expected) <= 5 * sd


def test_refined_template_samples_the_winning_inline_value_more(
    store: Store, wild: Path, tmp_path: Path
) -> None:
    path = tmp_path / "t.sdp"
    path.write_text(TEMPLATE)
    make_experiment(
        store,
        "p",
        TEMPLATE,
        1500,
        rate_by({("prompt{1}", "green"): 0.35}, 0.08),
        template_path=str(path),
        wildcards=(wild,),
    )
    result = refine_result(store, "p", wildcards_to=wildcard_folder(tmp_path / "next.sdp"))
    colours = re.search(r"a \{([^}]*)\}", result.text).group(1)
    weights = {t: float(w) for w, t in re.findall(r"([\d.]+)::(\w+)", colours)}
    assert set(weights) == {"red", "green", "blue", "yellow"}
    expected = weights["green"] / sum(weights.values())
    assert expected > 0.35  # it was 1 in 4
    nxt = tmp_path / "next.sdp"
    nxt.write_text(result.text)
    for rel, text in result.wildcards.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    program = load(nxt)
    assert [v.name for v in program.variables] == [
        v.name for v in loads(TEMPLATE, wildcard_dirs=[wild]).variables
    ]
    n = 4000
    samples = list(RANDOM.samples(program, 0, n, 9))
    assert _close(_share(samples, "prompt{1}", "green"), expected, n)


def test_refined_wildcard_lines_are_weighted_copies(store: Store, wild: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "t.sdp"
    path.write_text(TEMPLATE)
    make_experiment(
        store,
        "p",
        TEMPLATE,
        1500,
        rate_by({("__weather__", "foggy"): 0.4}, 0.08),
        template_path=str(path),
        wildcards=(wild,),
    )
    out = tmp_path / "round2" / "next.sdp"
    out.parent.mkdir()
    argv = ["refine", "p", "-o", str(out), "--workspace", str(store.workspace)]
    assert main(argv) == 0
    assert "weighted wildcard files" in capsys.readouterr().err
    copy = (out.parent / "next-wildcards" / "weather.txt").read_text()
    weights = {line.split("::")[1].strip(): float(line.split("::")[0]) for line in copy.splitlines()}
    assert set(weights) == set(WEATHER)
    expected = weights["foggy"] / sum(weights.values())
    assert expected > 0.35
    assert "@wildcards = next-wildcards" in out.read_text()
    assert wild.joinpath("weather.txt").read_text() == "\n".join(WEATHER) + "\n"  # the original stays
    assert main(["check", str(out)]) == 0  # found from the refined template's own folder
    capsys.readouterr()
    n = 4000
    samples = list(RANDOM.samples(load(out), 0, n, 9))
    assert _close(_share(samples, "__weather__", "foggy"), expected, n)
    # the copies are never replaced without --force
    assert main(argv + ["--force"]) == 0
    out.unlink()
    assert main(argv) == 2
    assert "pass --force" in capsys.readouterr().err


def test_exploit_samples_what_the_refined_template_samples(store: Store, wild: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.sdp"
    path.write_text(TEMPLATE)
    rule = rate_by({("__weather__", "foggy"): 0.4, ("prompt{1}", "blue"): 0.3}, 0.08)
    make_experiment(store, "p", TEMPLATE, 1000, rule, template_path=str(path), wildcards=(wild,))
    result = refine_result(store, "p", wildcards_to="next-wildcards")
    refined = tmp_path / "next.sdp"
    refined.write_text(result.text)
    for rel, text in result.wildcards.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    exploit = tmp_path / "exploit.sdp"
    exploit.write_text(
        TEMPLATE.replace(
            "@seed = 4", f"@sampler = exploit\n@exploit = p\n@exploit_workspace = {store.workspace}"
        )
    )
    sampler = get_sampler("exploit")
    program = load(exploit, [wild], plugins.setting_specs())
    a = [s.prompt for s in sampler.samples(program, 0, 300, 5)]
    b = [s.prompt for s in RANDOM.samples(load(refined), 0, 300, 5)]
    assert a == b


def test_refine_writes_optional_and_item_weights_and_keeps_names(store: Store, tmp_path: Path) -> None:
    t = "prompt = x[ big|small], {2$$ and $$a hat|a bell|boots}[#night: at night]\n"
    rule = rate_by({("prompt{1}+a bell", "a bell"): 0.5, ("night", "at night"): 0.3}, 0.05)
    make_experiment(store, "o", t, 1500, rule)
    text = refine_result(store, "o").text
    body = text.split("\n\n", 1)[1]
    m = re.fullmatch(
        r"prompt = x\[([\d.]+)::\{([\d.]+):: big\|([\d.]+)::small\}\], "
        r"\{2\$\$ and \$\$([\d.]+)::a hat\|([\d.]+)::a bell\|([\d.]+)::boots\}"
        r"\[#night: ([\d.]+)::at night\]\n",
        body,
    )
    assert m is not None, body
    hat, bell, boots = (float(m.group(k)) for k in (4, 5, 6))
    assert bell > 2 * max(hat, boots)
    assert float(m.group(7)) > 1.1  # present more often than absent
    before, after = loads(t), loads(text)
    assert [(v.name, v.values) for v in before.variables] == [(v.name, v.values) for v in after.variables]


def test_drop_weighs_losing_inline_values_zero(store: Store) -> None:
    t = "prompt = {red|green|blue|grey} thing\n"
    make_experiment(
        store, "d", t, 1500, rate_by({("prompt{1}", "green"): 0.5, ("prompt{1}", "grey"): 0.0}, 0.2)
    )
    result = refine_result(store, "d", drop=True)
    assert "|0::grey}" in result.text and ("prompt{1}", "grey") in result.dropped
    assert [v.values for v in loads(result.text).variables] == [("red", "green", "blue", "grey")]


# ---------------------------------------------------------------------------------------
# pooling experiments of one lineage


def _record(store: Store, name: str, rows: list[tuple[dict[str, tuple[int, str]], bool]]) -> None:
    """An experiment whose samples have exactly these traces and favourite marks."""
    spec = ExperimentSpec(name, None, "prompt = x", "", "random", 0, len(rows), "dummy", {})
    exp = store.open_experiment(spec)
    samples = [
        Sample(i, "x", "", {}, i, {k: Chosen(*v) for k, v in trace.items()})
        for i, (trace, _) in enumerate(rows)
    ]
    store.record_done(exp.id, [(s, f"{s.index}.png", 0.0, 1) for s in samples])
    favs = [i for i, (_, fav) in enumerate(rows) if fav]
    if favs:
        store.rate(exp, favs, favourite=True)


def test_pooling_compares_each_value_within_its_experiments(store: Store) -> None:
    # `x` makes no difference in either round, but it is common in the round with more
    # favourites: pooled naively it would look like a winner
    a = [({"c": (0, "x")}, i < 10) for i in range(100)] + [({"c": (1, "y")}, i < 40) for i in range(400)]
    b = [({"c": (0, "x")}, i < 200) for i in range(400)] + [({"c": (1, "y")}, i < 50) for i in range(100)]
    _record(store, "a", a)
    _record(store, "b", b)
    report = experiment_stats(store, ["a", "b"])
    assert (report.images, report.favourites) == (1000, 300)
    assert report.experiments == ("a", "b") and "experiment by experiment" in report.to_dict()["test"]
    x = next(v for v in report.values if v.text == "x")
    assert (x.images, x.favourites) == (500, 210) and x.rate > report.base_rate
    assert not x.significant and x.lift == pytest.approx(1.0)
    # while a real winner still is one
    b2 = [({"c": (0, "x")}, i < 300) for i in range(400)] + [({"c": (1, "y")}, i < 25) for i in range(100)]
    _record(store, "b2", b2)
    assert next(v for v in experiment_stats(store, ["a", "b2"]).values if v.text == "x").significant


def test_a_variable_only_one_round_has_is_compared_within_that_round(store: Store) -> None:
    a = [({"c": (0, "x")}, i % 4 == 0) for i in range(200)]
    b = [({"c": (0, "x"), "new{1}": (i % 2, "pq"[i % 2])}, i % 4 == 0) for i in range(200)]
    _record(store, "a", a)
    _record(store, "b", b)
    report = experiment_stats(store, ["a", "b"])
    p = next(v for v in report.values if v.name == "new{1}" and v.text == "p")
    assert p.images == 100 and not any(v.name == "new{1}" and v.absent for v in report.values)
    with pytest.raises(UsageError, match="no traced variable in common"):
        _record(store, "z", [({"other": (0, "o")}, True)])
        experiment_stats(store, ["a", "z"])


def test_sdp_stats_pools_several_names(store: Store, capsys) -> None:
    _record(store, "a", [({"c": (i % 2, "xy"[i % 2])}, i % 3 == 0) for i in range(60)])
    _record(store, "b", [({"c": (i % 2, "xy"[i % 2])}, i % 5 == 0) for i in range(60)])
    assert main(["stats", "a", "b", "--workspace", str(store.workspace)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("a + b: 120 images;") and "experiment by experiment" in out


def test_the_stratified_test_is_fishers_for_one_experiment_and_exact_for_few() -> None:
    from stable_discovery.analysis.stats import fisher_greater

    assert stratified_greater(7, [(20, 10, 50)]) == fisher_greater(7, 20, 10, 50)
    # two strata: the exact convolution equals a brute-force sum
    strata = [(5, 3, 10), (4, 2, 8)]
    total = 0.0
    for x in range(0, 4):
        for y in range(0, 3):
            px = fisher_greater(x, 5, 3, 10) - fisher_greater(x + 1, 5, 3, 10)
            py = fisher_greater(y, 4, 2, 8) - fisher_greater(y + 1, 4, 2, 8)
            if x + y >= 4:
                total += px * py
    assert stratified_greater(4, strata) == pytest.approx(total)
    # large strata: the normal approximation is close to the exact tail
    big = [(3000, 1500, 6000), (2500, 500, 5000)]
    mean = 3000 * 1500 / 6000 + 2500 * 500 / 5000
    assert stratified_greater(int(mean), big) == pytest.approx(0.5, abs=0.02)
    assert stratified_greater(int(mean) + 80, big) < 1e-3


# ---------------------------------------------------------------------------------------
# names, weighted lines, @wildcards, check


def test_a_wildcard_used_twice_is_numbered_in_the_order_of_the_prompt(wild: Path) -> None:
    program = loads("__weather__ then __weather__", wildcard_dirs=[wild])
    for s in RANDOM.samples(program, 0, 20, 1):
        first, second = s.prompt.split(" then ")
        assert s.trace["__weather__"].text == first and s.trace["__weather__#2"].text == second


def test_names_survive_edits_that_do_not_move_them() -> None:
    before = loads("prompt = {a|b} {x|y} {#c: p|q}")
    after = loads("prompt = {a|b|2::z} and {x {m|n}|y} {u|v} {#c: p|q|r}")
    assert [v.name for v in before.variables] == ["prompt{1}", "prompt{2}", "c"]
    assert [v.name for v in after.variables] == ["prompt{1}", "prompt{2}", "prompt{2}{1}", "prompt{3}", "c"]
    moved = loads("prompt = {new|one} {a|b} {x|y} {#c: p|q}")
    assert [v.name for v in moved.variables] == ["prompt{1}", "prompt{2}", "prompt{3}", "c"]


def test_named_choices_errors() -> None:
    assert "given to two things" in error("prompt = {#a: x|y} {#a: p|q}").message
    assert "given to two things" in error("a = x | y\nprompt = <a> {#a: p|q}").message
    assert "given to two things" in error("@steps = 1 | 2\nprompt = {#steps: p|q}").message
    # `{#` not followed by a name and a colon is still a comment
    assert error("prompt = {# x|y}").message.startswith("unclosed '{'")


def test_weighted_wildcard_lines(tmp_path: Path) -> None:
    wild = write_wildcards(tmp_path / "w", {"w": ["3:: a", "b", "  0.5::c  ", "b", "2:: a", "0:: d"]})
    program = loads("__w__", wildcard_dirs=[wild])
    (var,) = program.variables
    assert var.values == ("a", "b", "c", "d")  # identical lines once, the first one's weight
    counts = Counter(s.prompt for s in RANDOM.samples(program, 0, 9000, 2))
    assert counts["d"] == 0 and program.count() == 4
    for text, share in (("a", 3 / 4.5), ("b", 1 / 4.5), ("c", 0.5 / 4.5)):
        assert _close(counts[text] / 9000, share, 9000)
    zero = write_wildcards(tmp_path / "z", {"z": ["0:: a", "0::b"]})
    assert "weight 0" in error("__z__", wildcards=[zero]).message


def test_the_wildcards_setting_is_searched_first(tmp_path: Path) -> None:
    write_wildcards(tmp_path / "wildcards", {"w": ["plain"], "other": ["o"]})
    write_wildcards(tmp_path / "mine", {"w": ["mine"]})
    path = tmp_path / "t.sdp"
    path.write_text("@wildcards = mine\nprompt = __w__ __other__\n")
    program = load(path)
    assert RANDOM.sample(program, 0, 0).prompt == "mine o"
    assert program.wildcard_dirs[0] == tmp_path / "mine"


def test_sdp_check_lists_the_traced_variables(tmp_path: Path, wild: Path, capsys) -> None:
    path = tmp_path / "t.sdp"
    path.write_text(TEMPLATE)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    listed = out.split("traced (name, kind, values):\n", 1)[1].split("sampler:", 1)[0]
    assert re.search(r"^  prompt\{1\} +choice +4 values: red \| green \| blue \| yellow$", listed, re.M)
    assert re.search(r"^  prompt\[1\] +optional +1 value or absent: , at night$", listed, re.M)
    assert re.search(r"^  prompt\{3\}\+a bell +item +present or absent$", listed, re.M)
    assert re.search(r"^  __weather__ +wildcard +4 lines$", listed, re.M)
    assert "{#name: a|b}" in listed  # how to name one
    assert main(["check", "-e", "a plain prompt"]) == 0
    assert "traced: nothing" in capsys.readouterr().out


def test_an_experiment_begun_before_keeps_recording_what_it_did(tmp_path: Path) -> None:
    """Samples made before every decision was traced keep their traces, and resuming the
    experiment records the same variables (slots and sampled settings) for the new ones."""
    template = "animal = cat | dog\nprompt = a {big|small} <animal>\n"
    program = loads(template)
    samples = list(RANDOM.samples(program, 0, 6, 0))
    old = lambda s: Sample(s.index, s.prompt, "", {}, s.index, {"animal": s.trace["animal"]})  # noqa: E731 - a test's shorthand
    spec = ExperimentSpec("old", None, template, "", "random", 0, 6, "dummy", {})
    variables = tuple((v.name, v.kind) for v in program.variables)
    with Store(tmp_path / "ws") as store:
        exp = store.open_experiment(spec)  # as the previous version opened it: no variables
        store.record_done(exp.id, [(old(s), f"{s.index}.png", 0.0, 1) for s in samples[:3]])
        exp = store.open_experiment(ExperimentSpec(**{**spec.__dict__, "variables": variables}))
        store.record_done(exp.id, [(s, f"{s.index}.png", 0.0, 1) for s in samples[3:]])
        assert [set(store.record(exp, i)["trace"]) for i in range(6)] == [{"animal"}] * 6
        fresh = store.open_experiment(
            ExperimentSpec(**{**spec.__dict__, "name": "new", "variables": variables})
        )
        store.record_done(fresh.id, [(s, f"{s.index}.png", 0.0, 1) for s in samples])
        assert set(store.record(fresh, 0)["trace"]) == {"prompt{1}", "animal"}


def test_lora_tags_written_in_choices_are_traced_like_any_value(store: Store) -> None:
    t = "prompt = a cat {<lora:ink:0.6>|<lora:oil:1>|} <lora:detail:{0.5|1}>\n"
    program = loads(t)
    assert [(v.name, v.values) for v in program.variables] == [
        ("prompt{1}", ("<lora:ink:0.6>", "<lora:oil:1>", "")),
        ("prompt{2}", ("0.5", "1")),
    ]
    make_experiment(store, "l", t, 900, rate_by({("prompt{1}", "<lora:oil:1>"): 0.4}, 0.1))
    top = experiment_stats(store, "l").values[0]
    assert (top.name, top.text, top.significant) == ("prompt{1}", "<lora:oil:1>", True)


def test_a_repaired_store_knows_the_kinds_of_the_variables(tmp_path: Path, wild: Path) -> None:
    """The spec file beside the images carries the variables, so that `sdp repair`
    rebuilds them with the experiment."""
    template = tmp_path / "t.sdp"
    template.write_text(TEMPLATE.replace("@seed = 4", "@seed = 4\n@count = 6\n@size = 64x64"))
    ws = tmp_path / "ws"
    assert main(["run", str(template), "--backend", "dummy", "--workspace", str(ws)]) == 0
    with Store(ws) as store:
        before = {v.name: v.kind for v in experiment_stats(store, "t").values}
    (ws / "discovery.db").unlink()
    for extra in ("discovery.db-wal", "discovery.db-shm"):
        (ws / extra).unlink(missing_ok=True)
    assert main(["repair", "--workspace", str(ws)]) == 0
    with Store(ws) as store:
        after = {v.name: v.kind for v in experiment_stats(store, "t").values}
    assert after == before and after["prompt[1]"] == "optional" and after["__weather__"] == "wildcard"
