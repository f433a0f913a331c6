"""sdp refine and the exploit sampler: the next template checks, its weights move the
right way with shrinkage, --drop, legacy → random, comments kept; exploit samples with
the same learned weights and is a pure function of the index."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from stable_discovery import plugins
from stable_discovery.analysis.learn import learn
from stable_discovery.analysis.refine import HEADER_MARK, format_weight, refine, refine_result
from stable_discovery.cli.main import main
from stable_discovery.errors import Source, TemplateError, UsageError
from stable_discovery.language.parser import parse
from stable_discovery.language.program import load, loads
from stable_discovery.plugins import get_sampler
from stable_discovery.store.database import Store
from tests.helpers import REPO, make_experiment, rate_by, store_counts

TEMPLATE = """\
# a planted-effect experiment
colour = red | green | 2:: blue   # blue twice as likely
       | yellow
animal = cat
       | dog     # good boy
       | fox
style  = oil painting | watercolour
prompt = a <colour> <animal>[, <style>]
@steps = 20 | 30
@seed  = 3
"""
PLANT = rate_by({("colour", "green"): 0.30, ("colour", "yellow"): 0.01}, 0.08)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def store(ws: Path):
    with Store(ws) as s:
        yield s


def weights(text: str) -> dict[str, dict[str, float]]:
    """Each definition's alternatives and weights, as the parser reads them."""
    out: dict[str, dict[str, float]] = {}
    for d in parse(Source("<t>", text)).definitions:
        out[("@" if d.is_setting else "") + d.name] = {a.text: a.weight for a in d.alternatives}
    return out


def shares(ws_: dict[str, float]) -> dict[str, float]:
    total = sum(ws_.values())
    return {k: v / total for k, v in ws_.items()}


def check(path: Path, capsys) -> str:
    assert main(["check", str(path)]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# refine


def test_refined_template_checks_and_weights_move_the_right_way(store: Store, tmp_path: Path, capsys) -> None:
    make_experiment(store, "planted", TEMPLATE, 2000, PLANT, seed=3)
    text = refine(store, "planted")
    path = tmp_path / "next.sdp"
    path.write_text(text)
    check(path, capsys)
    before, after = shares(weights(TEMPLATE)["colour"]), shares(weights(text)["colour"])
    assert after["green"] > 2 * before["green"]
    assert after["yellow"] < before["yellow"] / 2
    assert max(after, key=after.get) == "green"
    assert sum(weights(text)["colour"].values()) == pytest.approx(100, abs=0.2)
    # settings and optional parts are weighed too; single-value settings are not touched
    assert set(weights(text)["@steps"]) == {"20", "30"}
    assert weights(text)["@seed"] == {"3": 1.0}
    assert re.search(r"\[\d+(\.\d+)?::, <style>\]", text)


def test_header_names_the_experiment_and_the_counts(store: Store) -> None:
    exp = make_experiment(store, "planted", TEMPLATE, 2000, PLANT, seed=3)
    report_favs = sum(1 for r in store.records(exp) if r["rating"]["favourite"])
    text = refine(store, "planted")
    header = text.split("\n\n", 1)[0]
    assert header.startswith(HEADER_MARK)
    assert "'planted'" in header and f"{report_favs:,} favourites among 2,000 images" in header
    assert all(line.startswith("#") for line in header.splitlines())


def test_comments_and_everything_else_are_preserved(store: Store) -> None:
    make_experiment(store, "planted", TEMPLATE, 2000, PLANT, seed=3)
    text = refine(store, "planted")
    for line in TEMPLATE.splitlines():
        if "#" in line:
            assert line[line.index("#") :] in text
    body = text.split("\n\n", 1)[1]
    without_weights = re.sub(r"\d+(?:\.\d+)?:: ?", "", body)
    assert without_weights == re.sub(r"\d+(?:\.\d+)?:: ?", "", TEMPLATE)


def test_sampling_the_refined_template_follows_the_learned_weights(store: Store) -> None:
    make_experiment(store, "planted", TEMPLATE, 2000, PLANT, seed=3)
    text = refine(store, "planted")
    expected = shares(weights(text)["colour"])
    program = loads(text)
    n = 20_000
    counts = Counter(s.trace["colour"].text for s in get_sampler("random").samples(program, 0, n, 11))
    for value, p in expected.items():
        assert counts[value] / n == pytest.approx(p, abs=0.012), value
    style = Counter("style" in s.trace for s in get_sampler("random").samples(program, 0, n, 11))
    w = float(re.search(r"\[(\d+(?:\.\d+)?)::", text).group(1))
    assert style[True] / n == pytest.approx(w / (1 + w), abs=0.012)


def test_shrinkage_two_of_two_does_not_beat_sixty_of_two_hundred(store: Store) -> None:
    t = "v = rare | common | other\nprompt = <v>\n"
    store_counts(store, "shrink", t, {"v": [(0, 2, 2), (1, 200, 60), (2, 1800, 90)]})
    learned = learn(store, "shrink")
    rare, common = learned.values["v"]["rare"], learned.values["v"]["common"]
    assert rare.rate == 1.0 and common.rate == 0.3
    assert rare.shrunk < common.shrunk
    w = weights(refine(store, "shrink"))["v"]
    assert w["common"] > w["rare"] > w["other"]
    # the formula: k = max(10, 2 / base); shrunk = (f + k base) / (n + k)
    base = 152 / 2002
    k = max(10.0, 2 / base)
    assert learned.k == pytest.approx(k)
    assert rare.shrunk == pytest.approx((2 + k * base) / (2 + k))
    assert rare.factor == pytest.approx(rare.shrunk / base)


def test_strength_zero_keeps_the_template_weights(store: Store) -> None:
    make_experiment(store, "planted", TEMPLATE, 600, PLANT)
    text = refine(store, "planted", strength=0)
    assert shares(weights(text)["colour"]) == pytest.approx(shares(weights(TEMPLATE)["colour"]), abs=1e-3)
    greedy = shares(weights(refine(store, "planted", strength=2))["colour"])
    plain = shares(weights(refine(store, "planted"))["colour"])
    assert greedy["green"] > plain["green"]


def test_drop_removes_clear_losers_only(store: Store, tmp_path: Path, capsys) -> None:
    make_experiment(store, "planted", TEMPLATE, 2000, PLANT, seed=3)
    result = refine_result(store, "planted", drop=True)
    w = weights(result.text)
    assert "yellow" not in w["colour"] and "green" in w["colour"]
    assert ("colour", "yellow") in result.dropped
    assert "Dropped (95% interval below the base rate): " in result.text
    assert set(w["animal"]) == {"cat", "dog", "fox"}
    path = tmp_path / "next.sdp"
    path.write_text(result.text)
    check(path, capsys)
    # without --drop nothing goes
    assert set(weights(refine(store, "planted"))["colour"]) == {"red", "green", "blue", "yellow"}


def test_drop_never_removes_every_value(store: Store) -> None:
    # every value of <s> loses against images without it: the best one stays
    t = "s = a | b | c\nprompt = x[ <s>]\n"
    store_counts(store, "all-lose", t, {"s": [(0, 300, 3), (1, 300, 9), (2, 300, 6)]})
    exp = store.require("all-lose")
    # and 600 images without <s>, half of them favourites
    from stable_discovery.sampling.sample import Sample

    extra = [Sample(900 + i, "x", "", {}, 900 + i, {}) for i in range(600)]
    store.record_done(exp.id, [(s, f"{s.index}.png", 0.0, 1) for s in extra])
    store.rate(exp, [s.index for s in extra[:300]], favourite=True)
    result = refine_result(store, "all-lose", drop=True)
    assert weights(result.text)["s"].keys() == {"b"}
    assert sorted(v for _, v in result.dropped) == ["a", "c"]
    # the optional part is weighed far down: absent does much better
    w = float(re.search(r"x\[([\d.]+):: <s>\]", result.text).group(1))
    assert w < 0.2


def test_dropping_keeps_layout_and_line_comments(store: Store) -> None:
    t = (
        "# top\nshade = light | dark  # about shades\n"
        "      | 3:: pale   # pale is popular\n      | grey\n"
        "prompt = a <shade> thing\n"
    )
    store_counts(store, "layout", t, {"shade": [(0, 300, 100), (1, 300, 1), (2, 300, 100), (3, 300, 1)]})
    text = refine(store, "layout", drop=True)
    body = text.split("\n\n", 1)[1]
    assert re.fullmatch(
        r"# top\nshade = [\d.]+:: light  # about shades\n      \| [\d.]+:: pale   # pale is popular\n"
        r"prompt = a <shade> thing\n",
        body,
    ), body


def test_weights_of_duplicates_and_zero_weights(store: Store) -> None:
    t = "v = a | b | a | 0:: z\nprompt = <v>\n"
    store_counts(store, "dups", t, {"v": [(0, 200, 60), (1, 200, 10)]})
    d = next(d for d in parse(Source("t", refine(store, "dups"))).definitions if d.name == "v")
    ws_ = [a.weight for a in d.alternatives]
    assert [a.text for a in d.alternatives] == ["a", "b", "a", "z"]
    assert ws_[0] == pytest.approx(ws_[2]) and ws_[0] > ws_[1] and ws_[3] == 0


def test_legacy_experiment_switches_to_random(store: Store, tmp_path: Path, capsys) -> None:
    program = load(REPO / "examples" / "golden-glasses.json")
    rule = rate_by({("action", "floating in space"): 0.4}, 0.05)
    make_experiment(store, "golden", program.source.text, 600, rule, template_path="golden-glasses.json")
    exp = store.require("golden")
    assert exp.sampler == "legacy" and "@sampler = legacy" in exp.template_text
    result = refine_result(store, "golden")
    text = result.text
    assert re.search(r"^@sampler = random$", text, re.M)
    assert not re.search(r"^@sampler = legacy", text, re.M)
    assert "legacy sampler, which ignores weights" in text.split("\n\n", 1)[0]
    assert "# Converted from" in text  # the conversion's own comment stays
    path = tmp_path / "next.sdp"
    path.write_text(text)
    out = check(path, capsys)
    assert "sampler: random" in out
    w = shares(weights(text)["action"])
    assert max(w, key=w.get) == "floating in space"
    assert re.search(r"\[[\d.]+::, <suffix_1>\]", text)
    program = load(path)
    n = 10_000
    counts = Counter(s.trace["action"].text for s in get_sampler("random").samples(program, 0, n, 1))
    assert counts["floating in space"] / n == pytest.approx(w["floating in space"], abs=0.015)


def test_refining_a_refined_experiment_replaces_the_header(store: Store) -> None:
    make_experiment(store, "one", TEMPLATE, 800, PLANT)
    first = refine(store, "one")
    make_experiment(store, "two", first, 800, PLANT, rule_seed=9)
    second = refine(store, "two")
    assert second.count(HEADER_MARK) == 1 and "'two'" in second
    assert second.split("\n\n", 1)[1].startswith("# a planted-effect experiment")


def test_no_favourites_is_an_error(store: Store) -> None:
    make_experiment(store, "none", TEMPLATE, 40, rate_by({}, 0.0))
    with pytest.raises(UsageError, match="has no favourites among its 40 images yet"):
        refine(store, "none")


def test_format_weight() -> None:
    assert [format_weight(w) for w in (0, 100, 33.3333, 4.5678, 0.012345, 1e-5, 1e-9)] == [
        "0",
        "100",
        "33.3",
        "4.57",
        "0.0123",
        "0.00001",
        "0.000001",
    ]


# ---------------------------------------------------------------------------------------
# sdp refine on the command line


def test_sdp_refine_writes_the_file_and_refuses_to_overwrite(ws: Path, tmp_path: Path, capsys) -> None:
    with Store(ws) as store:
        make_experiment(store, "planted", TEMPLATE, 1000, PLANT)
    out = tmp_path / "next.sdp"
    argv = ["refine", "planted", "-o", str(out), "--workspace", str(ws)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"wrote {out}" in err and "among 1,000 images of planted" in err
    assert main(["check", str(out)]) == 0
    capsys.readouterr()
    assert main(argv + ["--drop"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(argv + ["--drop", "--force"]) == 0
    assert "yellow" not in weights(out.read_text())["colour"]
    capsys.readouterr()
    assert main(["refine", "planted", "--workspace", str(ws)]) == 0
    assert capsys.readouterr().out.startswith(HEADER_MARK)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["refine", "nope"], "no experiment named 'nope'"),
        (["refine", "empty"], "has no favourites"),
    ],
)
def test_sdp_refine_errors(ws: Path, capsys, argv: list[str], message: str) -> None:
    with Store(ws) as store:
        make_experiment(store, "empty", TEMPLATE, 10, rate_by({}, 0.0))
    assert main([*argv, "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_sdp_refine_bad_strength(ws: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["refine", "x", "--strength", "-1", "--workspace", str(ws)])
    assert info.value.code == 2
    assert "at least 0" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# the exploit sampler


def exploit_template(ws: Path, name: str = "planted") -> str:
    return TEMPLATE + f"@sampler = exploit\n@exploit = {name}\n@exploit_workspace = {ws}\n"


def program_of(text: str):
    return loads(text, extra_settings=plugins.setting_specs())


def test_exploit_samples_with_the_learned_weights(ws: Path) -> None:
    with Store(ws) as store:
        make_experiment(store, "planted", TEMPLATE, 2000, PLANT, seed=3)
        refined = refine(store, "planted")
    program = program_of(exploit_template(ws))
    sampler = get_sampler("exploit")
    n = 20_000
    samples = list(sampler.samples(program, 0, n, 5))
    counts = Counter(s.trace["colour"].text for s in samples)
    for value, p in shares(weights(refined)["colour"]).items():
        assert counts[value] / n == pytest.approx(p, abs=0.012), value
    # the same prompts as the random sampler gives the template refine writes
    same = list(get_sampler("random").samples(loads(refined), 0, 500, 5))
    assert [(s.prompt, dict(s.trace)) for s in samples[:500]] == [(s.prompt, dict(s.trace)) for s in same]
    assert "exploit" not in samples[0].settings  # it steers the sampler, not the image


def test_exploit_is_a_pure_function_of_the_index(ws: Path) -> None:
    with Store(ws) as store:
        make_experiment(store, "planted", TEMPLATE, 600, PLANT)
    text = exploit_template(ws)
    run = list(get_sampler("exploit").samples(program_of(text), 0, 300, 9))
    for i in (0, 1, 17, 150, 299):
        alone = get_sampler("exploit").sample(program_of(text), i, 9)
        assert alone == run[i]
    middle = list(get_sampler("exploit").samples(program_of(text), 100, 200, 9))
    assert middle == run[100:200]
    assert [s.index for s in middle] == list(range(100, 200))


def test_exploit_weights_change_with_the_ratings_only(ws: Path) -> None:
    with Store(ws) as store:
        exp = make_experiment(store, "planted", TEMPLATE, 600, PLANT)
        text = exploit_template(ws)
        before = [s.prompt for s in get_sampler("exploit").samples(program_of(text), 0, 200, 1)]
        again = [s.prompt for s in get_sampler("exploit").samples(program_of(text), 0, 200, 1)]
        assert before == again
        store.rate(exp, list(range(0, 600, 3)), favourite=True)
        after = [s.prompt for s in get_sampler("exploit").samples(program_of(text), 0, 200, 1)]
    assert after != before


def test_exploit_matches_values_by_text_in_an_edited_template(ws: Path) -> None:
    with Store(ws) as store:
        make_experiment(store, "planted", TEMPLATE, 2000, PLANT, seed=3)
    edited = exploit_template(ws).replace("colour = red | green", "colour = purple | green | red")
    program = program_of(edited)
    n = 20_000
    counts = Counter(s.trace["colour"].text for s in get_sampler("exploit").samples(program, 0, n, 2))
    # green still leads; purple (never seen) keeps its template weight, as red roughly does
    assert counts.most_common(1)[0][0] == "green"
    assert counts["purple"] > counts["yellow"]


def test_exploit_through_sdp_run(ws: Path, tmp_path: Path, capsys) -> None:
    with Store(ws) as store:
        make_experiment(store, "planted", TEMPLATE, 1000, PLANT)
    tmpl = tmp_path / "next.sdp"
    tmpl.write_text(exploit_template(ws) + "@size = 64x64\n@count = 8\n")
    assert main(["run", str(tmpl), "--backend", "dummy", "--workspace", str(ws)]) == 0
    capsys.readouterr()
    assert main(["show", "next", "3", "--json", "--workspace", str(ws)]) == 0
    rec = json.loads(capsys.readouterr().out)
    expected = get_sampler("exploit").sample(program_of(tmpl.read_text()), 3, 3)
    assert rec["prompt"] == expected.prompt


@pytest.mark.parametrize(
    "extra, error, message",
    [
        ("@sampler = exploit\n", TemplateError, "the exploit sampler needs @exploit = EXPERIMENT"),
        (
            "@sampler = exploit\n@exploit = nope\n@exploit_workspace = {ws}\n",
            UsageError,
            "no experiment named 'nope'",
        ),
        (
            "@sampler = exploit\n@exploit = planted\n@exploit_workspace = {ws}/missing\n",
            UsageError,
            "there is no run store in",
        ),
        (
            "@sampler = exploit\n@exploit = empty\n@exploit_workspace = {ws}\n",
            UsageError,
            "has no favourites",
        ),
    ],
    ids=["no-exploit-setting", "unknown-experiment", "no-store", "no-favourites"],
)
def test_exploit_errors(ws: Path, extra: str, error: type, message: str) -> None:
    with Store(ws) as store:
        make_experiment(store, "planted", TEMPLATE, 100, PLANT)
        make_experiment(store, "empty", TEMPLATE, 10, rate_by({}, 0.0))
    program = program_of(TEMPLATE + extra.format(ws=ws))
    with pytest.raises(error, match=re.escape(message)):
        list(get_sampler("exploit").samples(program, 0, 3, 0))


def test_exploit_setting_errors(capsys) -> None:
    assert main(["check", "-e", "prompt = a\n@exploit = no/slashes"]) == 2
    assert "@exploit: bad experiment name" in capsys.readouterr().err


def test_exploit_errors_on_the_command_line(ws: Path, capsys) -> None:
    with Store(ws) as store:
        make_experiment(store, "planted", TEMPLATE, 100, PLANT)
    text = TEMPLATE + f"@sampler = exploit\n@exploit = plantd\n@exploit_workspace = {ws}\n"
    assert main(["sample", "-e", text, "-n", "2"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'planted'?" in err and "Traceback" not in err


def test_exploit_reads_sdp_workspace(ws: Path, monkeypatch) -> None:
    with Store(ws) as store:
        make_experiment(store, "planted", TEMPLATE, 300, PLANT)
    monkeypatch.setenv("SDP_WORKSPACE", str(ws))
    program = program_of(TEMPLATE + "@sampler = exploit\n@exploit = planted\n")
    assert len(list(get_sampler("exploit").samples(program, 0, 5, 0))) == 5


def test_exploit_is_listed_as_a_builtin_plugin(capsys) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "stable_discovery.plugins.builtin.exploit (built-in)" in out
    assert "exploit" in out.split("samplers:", 1)[1].splitlines()[0]


# ---------------------------------------------------------------------------------------
# every construct of the language survives a refine


CORPUS = sorted((REPO / "grammar" / "corpus" / "valid").glob("*.sdp")) + sorted(
    (REPO / "examples").glob("*.sdp")
)


def comments(text: str) -> list[str]:
    return [m.group(0).rstrip() for m in re.finditer(r"(?<!\\)#(?![A-Za-z_]\w*:)[^\n]*", text)]


INLINE_WEIGHT = re.compile(r"(?<=[{\[|:$])([ \t]*)(?:\d+(?:\.\d*)?|\.\d+)[ \t]*::")


def plain(text: str) -> str:
    """An alternative as written, without the weights refine writes inside it (and
    ``[{a|b}]``, which is how refine weighs ``[a|b]``, as ``[a|b]``)."""
    return INLINE_WEIGHT.sub(r"\1", text).replace("[{", "[").replace("}]", "]")


def plain_weights(text: str) -> dict[str, list[str]]:
    return {name: [plain(a) for a in alts] for name, alts in weights(text).items()}


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_refine_keeps_every_template_of_the_corpus_intact(path: Path, tmp_path: Path) -> None:
    wildcards = (path.parent / "wildcards",)
    original = load(path, wildcards).source.text
    with Store(tmp_path / "ws") as store:
        make_experiment(
            store,
            "c",
            original,
            300,
            rate_by({}, 0.2),
            sampler="random",
            template_path=str(path),
            wildcards=wildcards,
        )
        kept = refine(store, "c")
        dropped = refine_result(store, "c", drop=True)
    for text in (kept, dropped.text):
        program = loads(text, wildcard_dirs=wildcards, extra_settings=plugins.setting_specs())
        assert len(list(get_sampler("random").samples(program, 0, 50, 1))) == 50
    # same definitions, same alternatives as written, comments kept; only weights differ
    before = plain_weights(original)
    if before.get("@sampler") in (["combinatorial"], ["shuffle"], ["legacy"]):
        before["@sampler"] = ["random"]  # refine switches to a sampler that weighs
    assert plain_weights(kept) == before
    for name, alts in weights(original).items():
        if len(alts) == 1 and name != "@sampler":
            assert list(weights(kept)[name].values()) == list(alts.values())
    assert set(comments(original)) <= set(comments(kept))
    # the same combinations and the same traced variables
    refined = loads(kept, wildcard_dirs=wildcards, extra_settings=plugins.setting_specs())
    program = load(path, wildcards, plugins.setting_specs())
    assert refined.count() == program.count()
    assert [(v.name, v.kind, v.values) for v in refined.variables] == [
        (v.name, v.kind, v.values) for v in program.variables
    ]
    gone = set(dropped.dropped)
    after_drop = plain_weights(dropped.text)
    for name, alts in before.items():
        assert [a for a in alts if (name, a) not in gone] == after_drop[name]


def test_rewriting_odd_layouts(store: Store) -> None:
    t = (
        "colour =\n"
        "       | red    # r\n"
        "# a comment line between alternatives\n"
        "\n"
        "       | .5:: green\n"
        "       |\n"
        "       | 2.:: a \\| b\n"
        "medium = 3:: oil | chalk|pencil\n"
        "place = {here|there} | <colour> place | nowhere\n"
        "prompt = <medium> of <colour>, <medium>[ in <place>][3::, <colour>]\n"
        "negative = bad <medium>\n"
        "@guidance = 7 | 2:: 9\n"
    )
    make_experiment(store, "odd", t, 1000, rate_by({("medium", "chalk"): 0.3}, 0.05))
    body = refine(store, "odd").split("\n\n", 1)[1]
    assert re.sub(r"\d+(?:\.\d+)?::", "W::", body) == (
        "colour =\n"
        "       | W:: red    # r\n"
        "# a comment line between alternatives\n"
        "\n"
        "       | W:: green\n"
        "       | W::\n"
        "       | W:: a \\| b\n"
        "medium = W:: oil | W:: chalk| W:: pencil\n"
        "place = W:: {W::here|W::there} | W:: <colour> place | W:: nowhere\n"
        "prompt = <medium> of <colour>, <medium>[W:: in <place>][W::, <colour>]\n"
        "negative = bad <medium>\n"
        "@guidance = W:: 7 | W:: 9\n"
    )
    # <colour> is used twice, but the optional part is traced itself: it is weighed too
    assert "[3::, <colour>]" not in body
    w = weights(body)
    assert list(w["colour"]) == ["red", "green", "", "a \\| b"]
    assert shares(w["medium"])["chalk"] > 0.25  # it was 1 in 5
