"""Samplers: random (counter-based, random access), combinatorial (odometer order, exact
counts, streaming), shuffle (seeded permutation), and weights."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from stable_discovery.errors import UsageError
from stable_discovery.language.program import loads
from stable_discovery.plugins import get_sampler, sampler_names
from stable_discovery.space.permutation import Permutation
from tests.helpers import records, traces

RANDOM = get_sampler("random")
COMB = get_sampler("combinatorial")
SHUFFLE = get_sampler("shuffle")

BIG = " ".join("{" + "|".join(f"w{i}x{j}" for j in range(10)) + "}" for i in range(30))  # 10**30
MANY_DRAWS = " ".join(f"{{a{i}|b{i}}}" for i in range(100))  # more draws than a block row
WIDE = "{" + "|".join(f"v{i}" for i in range(700)) + "} {x|y}"  # more paths than one table

TEMPLATES = {
    "simple": "{a|b|c} {x|2::y}",
    "optional": "a[ b][ {c|d}] {e|f}",
    "multi": "{2$$a|b|c|d} {1-3$$ and $$x|y|z}",
    "shared": "s = a|b|c\nt = <s>-{1|2}\nprompt = <s> {<s>|z} [<t>]\nnegative = no <s>",
    "settings": "prompt = {a|b} | c\n@steps = 10|20|30\n@guidance = 5|3::7",
    "weights": "c = 3::red | blue | 0.5::green\nprompt = {4::big|small} <c> ball",
    "shared_multi": "s = p|q\nprompt = {1-2$$<s>|x|y} <s>",
    "many_draws": MANY_DRAWS,
    "wide": WIDE,
    "big": BIG,
}


def key(s):
    return (s.prompt, s.negative, tuple(sorted(s.settings.items())), tuple(sorted(traces(s).items())))


def test_sampler_names_and_unknown_sampler():
    assert {"random", "combinatorial", "shuffle", "legacy"} <= set(sampler_names())
    with pytest.raises(UsageError) as info:
        get_sampler("nope")
    assert "unknown sampler 'nope'" in str(info.value) and "random" in str(info.value)


# ---------------------------------------------------------------------------------------
# random


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_random_same_seed_same_samples(name):
    program = loads(TEMPLATES[name])
    first = list(RANDOM.samples(program, 0, 300, 42))
    again = list(RANDOM.samples(loads(TEMPLATES[name]), 0, 300, 42))
    assert [key(s) for s in first] == [key(s) for s in again]
    other = list(RANDOM.samples(program, 0, 300, 43))
    assert [s.prompt for s in first] != [s.prompt for s in other]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_random_sample_alone_equals_the_stream(name):
    program = loads(TEMPLATES[name])
    stream = list(RANDOM.samples(program, 0, 2100, 9))
    for i in (0, 1, 2, 3, 4, 511, 1022, 1023, 1024, 1025, 2047, 2048, 2049, 2099):
        assert key(RANDOM.sample(program, i, 9)) == key(stream[i])
        assert RANDOM.sample(program, i, 9).index == i


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_random_any_window_equals_the_stream(name):
    program = loads(TEMPLATES[name])
    stream = list(RANDOM.samples(program, 0, 2100, 1))
    for start, stop in ((1000, 1100), (1, 4), (1023, 1025), (2, 2050), (2098, 2100)):
        window = list(RANDOM.samples(program, start, stop, 1))
        assert [key(s) for s in window] == [key(s) for s in stream[start:stop]]
        assert [s.index for s in window] == list(range(start, stop))


@pytest.mark.parametrize("name", ["simple", "shared", "many_draws", "big"])
def test_random_access_far_away(name):
    program = loads(TEMPLATES[name])
    far = 10**6
    window = list(RANDOM.samples(program, far - 3, far + 3, 5))
    assert key(RANDOM.sample(program, far, 5)) == key(window[3])
    huge = 10**15 + 7
    assert key(RANDOM.sample(program, huge, 5)) == key(list(RANDOM.samples(program, huge, huge + 2, 5))[0])


def test_random_samples_are_pinned():
    # Sample i is a pure function of (template, seed, i), the same on every run and
    # machine: these values were recorded once. If a change to the draws or to the
    # order in which a template takes them alters them, experiments stop being
    # reproducible across versions: change these only on purpose (and say so).
    program = loads("{a|b|c|d|e|f|g|h} {1|2|3|4|5|6|7|8}")
    got = [s.prompt for s in RANDOM.samples(program, 0, 8, 0)]  # a numpy block
    assert got == ["h 1", "b 4", "d 3", "f 1", "a 6", "b 3", "c 4", "b 4"]
    assert [RANDOM.sample(program, i, 0).prompt for i in range(3)] == got[:3]  # one at a time
    assert RANDOM.sample(program, 10**6, 0).prompt == "c 5"
    assert RANDOM.sample(program, 12345, 99).prompt == "g 2"
    assert [SHUFFLE.sample(program, i, 3).prompt for i in range(5)] == ["b 7", "h 4", "e 1", "b 5", "c 3"]


def test_draws_are_pinned():
    from stable_discovery.space.draws import sample_key, seed_key, uniform

    assert seed_key(0) == 6249075241834828744
    assert sample_key(seed_key(0), 0) == 12852419521581089378
    assert uniform(sample_key(seed_key(0), 0), 0) == 0.8844237929262129


def test_random_seed_is_any_integer():
    program = loads("{a|b|c|d}")
    for seed in (-1, 0, 2**80, -(2**70)):
        assert key(RANDOM.sample(program, 3, seed)) == key(list(RANDOM.samples(program, 0, 4, seed))[3])


def test_random_size_is_unbounded():
    assert RANDOM.size(loads("{a|b}")) is None


def test_random_empty_range():
    assert list(RANDOM.samples(loads("{a|b}"), 5, 5, 0)) == []


@pytest.mark.parametrize("name", ["simple", "optional", "multi", "shared", "settings", "shared_multi"])
def test_random_samples_are_in_the_combinatorial_space(name):
    program = loads(TEMPLATES[name])
    space = {key(s) for s in records(program)}
    drawn = {key(s) for s in RANDOM.samples(program, 0, 3000, 11)}
    assert drawn <= space
    assert drawn == space  # small spaces: every combination is reached


def test_random_prompts_shortcut_matches_samples():
    program = loads(TEMPLATES["shared"])
    assert list(RANDOM.prompts(program, 10, 50, 3)) == [s.prompt for s in RANDOM.samples(program, 10, 50, 3)]


# ---------------------------------------------------------------------------------------
# weights


def shares(program, n=20000, seed=1234, what=lambda s: s.prompt):
    counts = Counter(what(s) for s in RANDOM.samples(program, 0, n, seed))
    return {k: v / n for k, v in counts.items()}


def test_weights_of_an_inline_choice():
    got = shares(loads("{3::a|b}"))
    assert abs(got["a"] - 0.75) < 0.015


def test_weights_of_a_slot():
    got = shares(loads("c = 3::red | blue | 0.5::green | 0::black\nprompt = <c>"))
    assert abs(got["red"] - 3 / 4.5) < 0.015
    assert abs(got["blue"] - 1 / 4.5) < 0.015
    assert abs(got["green"] - 0.5 / 4.5) < 0.015
    assert "black" not in got


def test_weights_inside_a_large_choice():
    # over RAND_TABLE_LIMIT paths: drawn choice by choice instead of from one table
    alts = "|".join(["9::heavy"] + [f"v{i}" for i in range(600)])
    got = shares(loads("{" + alts + "}"))
    assert abs(got["heavy"] - 9 / 609) < 0.004


def test_weights_of_settings():
    program = loads("prompt = x\n@steps = 10 | 4::20\n@guidance = 1::5 | 1::7")
    got = shares(program, what=lambda s: s.settings["steps"])
    assert abs(got[20] - 0.8) < 0.015
    got = shares(program, what=lambda s: s.settings["guidance"])
    assert abs(got[5.0] - 0.5) < 0.015


def test_optional_is_present_half_the_time():
    got = shares(loads("[x]"))
    assert abs(got["x"] - 0.5) < 0.015


def test_weights_of_nested_choices_multiply():
    got = shares(loads("{3::{a|b}|c}"))
    assert abs(got["a"] - 0.375) < 0.015 and abs(got["c"] - 0.25) < 0.015


def test_weighted_multi_select_draws_without_replacement():
    got = shares(loads("{2$$2::a|b|c}"))
    # first a with 1/2; then b or c with 1/2 each; b first (1/4) then a with 2/3
    assert abs(got["a,b"] - 0.25) < 0.015
    assert abs(got["b,a"] - 1 / 6) < 0.015
    assert abs(got["b,c"] - 1 / 12) < 0.015


def test_multi_select_range_count_is_uniform():
    got = shares(loads("{1-3$$a|b|c}"), what=lambda s: len(s.prompt.split(",")))
    for k in (1, 2, 3):
        assert abs(got[k] - 1 / 3) < 0.015


def test_multi_select_with_shared_slots_has_the_same_distribution():
    plain = shares(loads("{1-2$$x|a|3::b} x"))
    shared = shares(loads("s = x\nprompt = {1-2$$<s>|a|3::b} <s>"))
    assert plain.keys() == shared.keys()
    for k in plain:
        assert abs(plain[k] - shared[k]) < 0.02


def test_duplicate_alternatives_add_their_weights():
    got = shares(loads("{a|a|b}"))
    assert abs(got["a"] - 2 / 3) < 0.015


def test_duplicate_slot_alternatives_are_traced_with_the_first_index():
    program = loads("s = a | b | a\nprompt = <s>")
    seen = {traces(s)["s"] for s in RANDOM.samples(program, 0, 500, 0)}
    assert seen == {(0, "a"), (1, "b")}


def test_multi_select_never_repeats_a_duplicate():
    program = loads("{2$$a|a|b}")
    assert {s.prompt for s in RANDOM.samples(program, 0, 500, 0)} == {"a,b", "b,a"}
    program = loads("{2$$a|a}")
    assert {s.prompt for s in RANDOM.samples(program, 0, 100, 0)} == {"a"}


def test_zero_weight_alternatives_in_a_multi_select_fill_only_when_needed():
    program = loads("{2$$0::a|b}")
    assert {s.prompt for s in RANDOM.samples(program, 0, 200, 0)} == {"b,a"}
    program = loads("{1$$0::a|b}")
    assert {s.prompt for s in RANDOM.samples(program, 0, 200, 0)} == {"b"}


# ---------------------------------------------------------------------------------------
# combinatorial


def test_odometer_order_across_prompt_negative_and_settings():
    program = loads("prompt = {a|b}\nnegative = {n|m}\n@steps = 1 | 2")
    got = [(s.prompt, s.negative, s.settings["steps"]) for s in records(program)]
    assert got == [(p, n, st) for p in "ab" for n in "nm" for st in (1, 2)]


def test_odometer_order_through_slots():
    program = loads("x = 1 | 2\ny = p | q\nprompt = <y>{A|B}<x>")
    assert [s.prompt for s in records(program)] == [
        "pA1",
        "pA2",
        "pB1",
        "pB2",
        "qA1",
        "qA2",
        "qB1",
        "qB2",
    ]


@pytest.mark.parametrize(
    "name", ["simple", "optional", "multi", "shared", "settings", "weights", "shared_multi"]
)
def test_combinatorial_sample_alone_equals_the_stream(name):
    program = loads(TEMPLATES[name])
    stream = records(program)
    assert len(stream) == program.count() == COMB.size(program)
    for i, s in enumerate(stream):
        alone = COMB.sample(program, i, 0)
        assert key(alone) == key(s) and alone.index == i
    # a window from the middle is the same as the stream's
    mid = len(stream) // 3
    assert [key(s) for s in COMB.samples(program, mid, mid + 5, 0)] == [key(s) for s in stream[mid : mid + 5]]


@pytest.mark.parametrize(
    "name", ["simple", "optional", "multi", "shared", "settings", "weights", "shared_multi"]
)
def test_combinatorial_records_are_distinct(name):
    stream = records(loads(TEMPLATES[name]))
    assert len({key(s) for s in stream}) == len(stream)


def test_combinatorial_count_of_a_huge_space_is_instant_and_exact():
    program = loads(BIG)
    assert program.count() == 10**30
    assert COMB.size(program) == 10**30


def test_combinatorial_streams_the_first_prompt_of_a_huge_space():
    program = loads(BIG)
    first = next(iter(COMB.samples(program, 0, program.count(), 0)))
    assert first.prompt == " ".join(f"w{i}x0" for i in range(30))
    two = list(itertools.islice(COMB.samples(program, 0, program.count(), 0), 2))
    assert two[1].prompt.endswith("w29x1")


def test_combinatorial_random_access_in_a_huge_space():
    program = loads(BIG)
    last = COMB.sample(program, 10**30 - 1, 0)
    assert last.prompt == " ".join(f"w{i}x9" for i in range(30))
    n = 123456789012345678901234567890
    digits = str(n).zfill(30)
    assert COMB.sample(program, n, 0).prompt == " ".join(f"w{i}x{d}" for i, d in enumerate(digits))
    window = list(COMB.samples(program, n, n + 3, 0))
    assert window[0].prompt == COMB.sample(program, n, 0).prompt
    assert [s.index for s in window] == [n, n + 1, n + 2]


def test_combinatorial_huge_space_with_shared_slots():
    s = "s = " + " | ".join(f"v{i}" for i in range(10)) + "\n"
    program = loads(s + "prompt = <s> " + BIG + " <s>")
    assert program.count() == 10**31
    first = next(iter(COMB.samples(program, 0, program.count(), 0)))
    assert first.prompt.startswith("v0 w0x0") and first.prompt.endswith("w29x0 v0")
    last = COMB.sample(program, 10**31 - 1, 0)
    assert last.prompt.startswith("v9 w0x9") and last.prompt.endswith("v9")


def test_combinatorial_index_out_of_range():
    program = loads("{a|b}")
    with pytest.raises(IndexError):
        COMB.sample(program, 2, 0)
    with pytest.raises(IndexError):
        COMB.sample(program, -1, 0)
    assert list(COMB.samples(program, 1, 99, 0))[0].prompt == "b"
    assert list(COMB.samples(program, 5, 9, 0)) == []


def test_combinatorial_trace_of_settings():
    program = loads("prompt = x\n@steps = 10 | 20")
    assert [traces(s) for s in records(program)] == [{"steps": (0, "10")}, {"steps": (1, "20")}]


def test_combinatorial_multi_select_decode_matches_items():
    program = loads("{2-3$$a|{b|c}|d|[e]}")
    stream = records(program)
    assert len(stream) == program.count()
    for i in range(0, len(stream), 7):
        assert COMB.sample(program, i, 0).prompt == stream[i].prompt


def test_large_multi_select_count_and_access():
    alts = "|".join(f"v{i}" for i in range(40))
    program = loads("{3-5$$" + alts + "}")
    expected = 40 * 39 * 38 + 40 * 39 * 38 * 37 + 40 * 39 * 38 * 37 * 36
    assert program.count() == expected
    last = COMB.sample(program, expected - 1, 0)
    assert last.prompt == "v39,v38,v37,v36,v35"
    assert COMB.sample(program, 0, 0).prompt == "v0,v1,v2"


# ---------------------------------------------------------------------------------------
# shuffle


@pytest.mark.parametrize("name", ["simple", "optional", "multi", "shared", "settings", "shared_multi"])
def test_shuffle_is_a_permutation_of_the_space(name):
    program = loads(TEMPLATES[name])
    space = [key(s) for s in records(program)]
    shuffled = [key(s) for s in SHUFFLE.samples(program, 0, program.count(), 5)]
    assert sorted(shuffled) == sorted(space)
    assert len(set(shuffled)) == len(shuffled)
    if len(space) > 5:
        assert shuffled != space


def test_shuffle_random_access_and_seeds():
    program = loads(TEMPLATES["multi"])
    stream = list(SHUFFLE.samples(program, 0, program.count(), 8))
    for i in range(0, len(stream), 5):
        alone = SHUFFLE.sample(program, i, 8)
        assert key(alone) == key(stream[i]) and alone.index == i
    again = list(SHUFFLE.samples(program, 0, program.count(), 8))
    assert [key(s) for s in again] == [key(s) for s in stream]
    other = list(SHUFFLE.samples(program, 0, program.count(), 9))
    assert [key(s) for s in other] != [key(s) for s in stream]
    assert SHUFFLE.size(program) == program.count()


def test_shuffle_image_seed_is_the_index():
    program = loads("{a|b|c}")
    assert [s.seed for s in SHUFFLE.samples(program, 0, 3, 4)] == [0, 1, 2]


def test_shuffle_in_a_huge_space():
    program = loads(BIG)
    picks = [SHUFFLE.sample(program, i, 1).prompt for i in range(20)]
    assert len(set(picks)) == 20
    window = [s.prompt for s in SHUFFLE.samples(program, 10**29, 10**29 + 3, 1)]
    assert window[0] == SHUFFLE.sample(program, 10**29, 1).prompt
    with pytest.raises(IndexError):
        SHUFFLE.sample(program, 10**30, 1)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 17, 100, 1000, 4097])
def test_permutation_is_a_bijection(n):
    perm = Permutation(n, 3)
    values = [perm[i] for i in range(n)]
    assert sorted(values) == list(range(n))
    assert all(perm.index(v) == i for i, v in enumerate(values))


def test_permutation_of_a_huge_range():
    perm = Permutation(10**30, 7)
    for i in (0, 1, 10**29, 10**30 - 1):
        v = perm[i]
        assert 0 <= v < 10**30
        assert perm.index(v) == i
    with pytest.raises(IndexError):
        perm[10**30]
    with pytest.raises(ValueError):
        Permutation(-1, 0)


def test_permutation_depends_on_the_seed():
    assert [Permutation(1000, 1)[i] for i in range(20)] != [Permutation(1000, 2)[i] for i in range(20)]


# ---------------------------------------------------------------------------------------
# shared slots are bound once


def test_shared_slot_same_value_everywhere_in_random_samples():
    program = loads(
        "c = red | green | blue | {dark|light} grey\n"
        "o = hat | shoes\n"
        "prompt = a <c> <o>, {matching <c> gloves|no gloves}[, <c> background]\n"
        "negative = not <c>, <o>"
    )
    for s in RANDOM.samples(program, 0, 1000, 2):
        colour = s.negative[len("not ") : s.negative.index(",")]
        assert s.prompt.startswith("a " + colour + " ")
        assert s.prompt.count(colour) == 1 + ("matching" in s.prompt) + ("background" in s.prompt)
        assert s.negative.endswith(", " + s.prompt.split(",")[0].split()[-1])
        assert traces(s)["c"][1] in ("red", "green", "blue", "{dark|light} grey")


def test_shared_slot_same_value_everywhere_in_combinatorial_samples():
    program = loads("c = r | g\nprompt = <c>{<c>|x}<c>\nnegative = <c>")
    assert [(s.prompt, s.negative) for s in records(program)] == [
        ("rrr", "r"),
        ("rxr", "r"),
        ("ggg", "g"),
        ("gxg", "g"),
    ]
