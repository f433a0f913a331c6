"""The original stable-discovery JSON generator configs (docs/language.md, "The original JSON configs"):
loading one reproduces the original tool's sequence exactly, and ``sdp convert`` gives an
equivalent .sdp file."""

from __future__ import annotations

import json
import random

import pytest

from stable_discovery.cli.main import main
from stable_discovery.errors import TemplateError
from stable_discovery.language.program import load, loads
from stable_discovery.plugins import get_sampler

LEGACY = get_sampler("legacy")

# The golden config of the original tool's README.
GOLDEN = {
    "subjects": ["a Golden Retriever wearing sunglasses"],
    "actions": [
        "walking on a tropical beach",
        "floating in space",
        "floating in space with galaxies in the background",
        "floating in space with the moon in the background",
        "black background",
        "grey background",
        "white background",
    ],
    "suffixes_1": ["vector graphics", "art deco"],
    "suffixes_2": [],
    "suffixes_3": ["teal and pink - synthwave style", "teal and pink"],
    "steps": [40, 50, 60],
    "num_configs": 10000,
    "generator_seed": 1338,
}


def original(config: dict) -> list[tuple[str, int, int, dict]]:
    """The original tool's algorithm, written as it was (Python's global random)."""
    state = random.getstate()
    try:
        random.seed(config["generator_seed"])
        out = []
        for i in range(config["num_configs"]):
            subject = random.sample(config["subjects"], 1)[0]
            action = random.sample(config["actions"], 1)[0]
            s1 = random.sample(config.get("suffixes_1", []) + [None], 1)[0]
            s2 = random.sample(config.get("suffixes_2", []) + [None], 1)[0]
            s3 = random.sample(config.get("suffixes_3", []) + [None], 1)[0]
            steps = random.sample(config["steps"], 1)[0]
            prompt = subject + " " + action + "".join(", " + s for s in (s1, s2, s3) if s)
            chosen = {"subject": subject, "action": action, "steps": str(steps)}
            for name, s in (("suffix_1", s1), ("suffix_2", s2), ("suffix_3", s3)):
                if s is not None:
                    chosen[name] = s
            out.append((prompt, steps, i, chosen))
        return out
    finally:
        random.setstate(state)


def replay(program, n=None) -> list[tuple[str, int, int, dict]]:
    n = program.setting("count") if n is None else n
    seed = program.setting("seed")
    return [
        (s.prompt, s.settings["steps"], s.seed, {k: v.text for k, v in s.trace.items()})
        for s in LEGACY.samples(program, 0, n, seed)
    ]


def write_config(tmp_path, config, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def test_golden_config_reproduces_the_original_sequence(tmp_path):
    program = load(write_config(tmp_path, GOLDEN))
    assert program.setting("sampler") == "legacy"
    assert program.setting("count") == 10000
    assert program.setting("seed") == 1338
    assert replay(program) == original(GOLDEN)


def test_golden_config_first_samples_are_pinned(tmp_path):
    # the original tool's first prompts for this config (Python's Mersenne Twister)
    got = replay(load(write_config(tmp_path, GOLDEN)), 3)
    assert [p for p, *_ in got] == [p for p, *_ in original(dict(GOLDEN, num_configs=3))]
    assert [seed for _, _, seed, _ in got] == [0, 1, 2]
    assert all(p.startswith("a Golden Retriever wearing sunglasses ") for p, *_ in got)


def test_trace_slot_names(tmp_path):
    program = load(write_config(tmp_path, GOLDEN))
    names = set()
    for s in LEGACY.samples(program, 0, 300, 1338):
        names |= set(s.trace)
        assert s.trace["subject"].index == 0
        assert GOLDEN["actions"][s.trace["action"].index] == s.trace["action"].text
        assert str(GOLDEN["steps"][s.trace["steps"].index]) == s.trace["steps"].text
    assert names == {"subject", "action", "suffix_1", "suffix_3", "steps"}


def test_sample_alone_equals_the_stream(tmp_path):
    program = load(write_config(tmp_path, GOLDEN))
    stream = list(LEGACY.samples(program, 0, 1500, 1338))
    for i in (0, 1, 999, 1024, 1499):
        assert LEGACY.sample(program, i, 1338) == stream[i]
    assert list(LEGACY.samples(program, 700, 710, 1338)) == stream[700:710]


CONFIGS = {
    "empty suffix lists": {
        "subjects": ["a", "b"],
        "actions": ["x", "y", "z"],
        "suffixes_1": [],
        "suffixes_2": [],
        "suffixes_3": [],
        "steps": [20],
        "num_configs": 200,
        "generator_seed": 0,
    },
    "no suffix keys": {
        "subjects": ["a"],
        "actions": ["x", "y"],
        "steps": [20, 30],
        "num_configs": 100,
        "generator_seed": 5,
    },
    "more than 21 actions": {
        "subjects": [f"subject {i}" for i in range(25)],
        "actions": [f"action {i}" for i in range(40)],
        "suffixes_1": [f"s1 {i}" for i in range(22)],
        "suffixes_2": ["s2"],
        "suffixes_3": [f"s3 {i}" for i in range(30)],
        "steps": list(range(1, 31)),
        "num_configs": 500,
        "generator_seed": 424242,
    },
    "duplicate values": {
        "subjects": ["dog", "dog", "cat"],
        "actions": ["runs", "runs"],
        "suffixes_1": ["x", "x", "y"],
        "suffixes_2": [],
        "suffixes_3": ["x"],
        "steps": [50, 50, 20],
        "num_configs": 300,
        "generator_seed": 7,
    },
    "special characters": {
        "subjects": [
            "a {b} | c # d",
            "__x__ <y> \\ $ [z]",
            "<lora:a__b:0.5>",
            "100% \\(x\\)",
            "x=y",
            "@steps = 3",
            "_a_ a__ __",
            "semi; colon: ok",
        ],
        "actions": ["{1|2}", "[opt]", "# not a comment", "\\{escaped\\}", "<subject>"],
        "suffixes_1": ["|", "{", "}", "__", "\\"],
        "suffixes_2": ["a::b", "x 3:: not at start"],
        "suffixes_3": ["é ü 🐕"],
        "steps": [25, 35],
        "num_configs": 400,
        "generator_seed": -12,
    },
    "empty strings": {
        "subjects": [""],
        "actions": ["", "x"],
        "suffixes_1": [""],
        "suffixes_2": [],
        "suffixes_3": [],
        "steps": [10],
        "num_configs": 50,
        "generator_seed": 3,
    },
    "zero samples": {
        "subjects": ["a"],
        "actions": ["b"],
        "steps": [10],
        "num_configs": 0,
        "generator_seed": 1,
    },
    "huge seed": {
        "subjects": ["a", "b", "c"],
        "actions": ["x", "y"],
        "suffixes_1": ["s"],
        "steps": [10, 20],
        "num_configs": 100,
        "generator_seed": 2**100 + 17,
    },
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_reproduces_the_original_sequence(tmp_path, name):
    config = CONFIGS[name]
    program = load(write_config(tmp_path, config))
    assert replay(program) == original(config)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_converted_sdp_gives_the_same_sequence(tmp_path, capsys, name):
    config = CONFIGS[name]
    path = write_config(tmp_path, config)
    assert main(["convert", str(path)]) == 0
    sdp_text = capsys.readouterr().out
    assert "@sampler = legacy" in sdp_text
    sdp = tmp_path / "converted.sdp"
    sdp.write_text(sdp_text, encoding="utf-8")
    converted = load(sdp)
    assert converted.legacy is None  # read as an ordinary .sdp file
    assert replay(converted) == original(config)
    assert replay(loads(sdp_text)) == original(config)


def test_convert_to_a_file(tmp_path, capsys):
    path = write_config(tmp_path, GOLDEN)
    out = tmp_path / "golden.sdp"
    assert main(["convert", str(path), "-o", str(out)]) == 0
    assert replay(load(out), 500) == original(dict(GOLDEN, num_configs=500))
    assert main(["convert", str(path), "-o", str(out)]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main(["convert", str(path), "-o", str(out), "--force"]) == 0


def test_converted_golden_config_text(tmp_path, capsys):
    assert main(["convert", str(write_config(tmp_path, GOLDEN))]) == 0
    text = capsys.readouterr().out
    assert "prompt = <subject> <action>[2::, <suffix_1>][2::, <suffix_3>]" in text
    assert "suffix_2" not in text
    assert "@steps = 40 | 50 | 60" in text
    assert "@count = 10000" in text and "@seed = 1338" in text


def test_converted_sdp_with_another_sampler_samples_the_same_slots(tmp_path, capsys):
    main(["convert", str(write_config(tmp_path, GOLDEN))])
    text = capsys.readouterr().out.replace("@sampler = legacy", "@sampler = random")
    program = loads(text)
    assert set(program.slots) == {"subject", "action", "suffix_1", "suffix_3", "prompt"}
    assert program.count() == 1 * 7 * 3 * 3 * 3
    prompts = {s.prompt for s in get_sampler("combinatorial").samples(program, 0, program.count(), 0)}
    assert prompts == {p for p, *_ in original(GOLDEN)}


def test_legacy_sampler_on_a_hand_written_sdp():
    text = (
        "subject = a | b\naction = x | y | z\nsuffix_2 = s | t\n"
        "prompt = <subject> <action>[, <suffix_2>]\nnegative = blurry\n"
        "@steps = 10 | 20\n@count = 50\n@seed = 9\n@sampler = legacy\n"
    )
    program = loads(text)
    config = {
        "subjects": ["a", "b"],
        "actions": ["x", "y", "z"],
        "suffixes_2": ["s", "t"],
        "steps": [10, 20],
        "num_configs": 50,
        "generator_seed": 9,
    }
    assert replay(program) == original(config)
    assert {s.negative for s in LEGACY.samples(program, 0, 5, 9)} == {"blurry"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("prompt = x\n@steps = 10", "needs slots <subject> and <action>"),
        ("subject = a\naction = b\nprompt = <subject> <action>", "needs slots <subject> and <action>"),
        ("subject = a\naction = b\nprompt = <action> <subject>\n@steps = 1", "`prompt = <subject> <action>`"),
        (
            "subject = a\naction = b\nother = c\nprompt = <subject> <action> <other>\n@steps = 1",
            "`prompt = <subject> <action>`",
        ),
        (
            "subject = {a|b}\naction = b\nprompt = <subject> <action>\n@steps = 1",
            "needs plain values in <subject>",
        ),
        (
            "subject = a\naction = b\nprompt = <subject> <action>\nnegative = x | y\n@steps = 1",
            "negative prompt must be plain text",
        ),
        (
            "subject = a\naction = b\nprompt = <subject> <action>\n@steps = 1\n@guidance = 5 | 7",
            "samples only @steps",
        ),
    ],
)
def test_legacy_sampler_refuses_other_shapes(text, message):
    program = loads(text)
    with pytest.raises(TemplateError) as info:
        list(LEGACY.samples(program, 0, 1, 0))
    assert message in info.value.message


# ---------------------------------------------------------------------------------------
# bad configs name the key


def bad(tmp_path, text: str) -> TemplateError:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        load(path)
    return info.value


def config_text(**changes) -> str:
    config = {"subjects": ["a"], "actions": ["b"], "steps": [10], "num_configs": 1, "generator_seed": 0}
    for k, v in changes.items():
        if v is None:
            config.pop(k)
        else:
            config[k] = v
    return json.dumps(config, indent=1)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"subjects": None}, "missing key 'subjects'"),
        ({"actions": None}, "missing key 'actions'"),
        ({"num_configs": None}, "missing key 'num_configs'"),
        ({"generator_seed": None}, "missing key 'generator_seed'"),
        ({"steps": None}, "'steps' must be a non-empty list of positive integers"),
        ({"subjects": []}, "'subjects' must not be empty"),
        ({"subjects": "a"}, "'subjects' must be a list of strings"),
        ({"actions": [1, 2]}, "'actions' must be a list of strings"),
        ({"suffixes_2": [None]}, "'suffixes_2' must be a list of strings"),
        ({"steps": []}, "'steps' must be a non-empty list of positive integers"),
        ({"steps": [10, "20"]}, "'steps' must be a non-empty list of positive integers"),
        ({"steps": [0]}, "'steps' must be a non-empty list of positive integers"),
        ({"steps": [True]}, "'steps' must be a non-empty list of positive integers"),
        ({"num_configs": -1}, "'num_configs' must be an integer of at least 0"),
        ({"num_configs": 1.5}, "'num_configs' must be an integer of at least 0"),
        ({"generator_seed": "1"}, "'generator_seed' must be an integer"),
        ({"generator_seed": False}, "'generator_seed' must be an integer"),
        ({"subject": ["typo"]}, "unknown key 'subject' in a generator config"),
        ({"subjects": ["two\nlines"]}, "a value of 'subjects' contains a line break"),
        ({"actions": ["3:: weighty"]}, "the value '3:: weighty' of 'actions' starts like a weight"),
    ],
)
def test_bad_config_names_the_key(tmp_path, changes, message):
    err = bad(tmp_path, config_text(**changes))
    assert message in err.message
    assert err.exit_code == 2
    assert err.format().startswith(str(tmp_path / "bad.json"))


def test_bad_config_points_at_the_key(tmp_path):
    err = bad(tmp_path, config_text(actions=[1]))
    line, col = err.source.line_col(err.offset)
    assert err.source.line_text(line)[col - 1 :].startswith('"actions"')


def test_unknown_key_lists_the_keys(tmp_path):
    err = bad(tmp_path, config_text(subject=["x"]))
    assert err.hint == (
        "the keys are: subjects, actions, suffixes_1, suffixes_2, suffixes_3, steps, "
        "num_configs, generator_seed"
    )


def test_invalid_json_gives_line_and_column(tmp_path):
    err = bad(tmp_path, '{\n  "subjects": ["a",]\n}')
    assert err.message.startswith("not valid JSON")
    assert err.location == f"{tmp_path / 'bad.json'}:2:20"


@pytest.mark.parametrize("text", ["[]", "3", '"x"', "null", ""])
def test_json_that_is_not_an_object(tmp_path, text):
    err = bad(tmp_path, text)
    assert "JSON" in err.message


def test_convert_of_a_bad_config_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(config_text(steps=None), encoding="utf-8")
    assert main(["convert", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'steps' must be a non-empty list of positive integers" in err
    assert "Traceback" not in err


def test_values_with_surrounding_spaces_are_exact_from_json(tmp_path):
    # a .sdp alternative is trimmed, but a JSON config is replayed from its own values
    config = {
        "subjects": [" spaced ", "a  b"],
        "actions": ["x ", " y"],
        "suffixes_1": [" s"],
        "steps": [10],
        "num_configs": 40,
        "generator_seed": 2,
    }
    got = replay(load(write_config(tmp_path, config)))
    assert got == original(config)
    assert any(p.startswith(" spaced  ") for p, *_ in got)


def test_empty_first_value_survives_conversion(tmp_path, capsys):
    config = {
        "subjects": ["", "s"],
        "actions": ["", "x", "y"],
        "steps": [10],
        "num_configs": 60,
        "generator_seed": 4,
    }
    main(["convert", str(write_config(tmp_path, config))])
    program = loads(capsys.readouterr().out)
    assert [a.text for a in program.slots["action"].alternatives] == ["", "x", "y"]
    assert replay(program) == original(config)
