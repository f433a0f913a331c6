"""Every template in examples/ passes `sdp check` and samples as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stable_discovery.cli.main import main
from tests.helpers import REPO

EXAMPLES = REPO / "examples"
FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".sdp", ".json"))


def test_the_examples_are_there():
    names = {p.name for p in FILES}
    assert {"golden-glasses.sdp", "golden-glasses.json", "wildcards-demo.sdp", "portrait.sdp"} <= names
    assert (EXAMPLES / "README.md").is_file()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_passes_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}") and ": ok" in out.splitlines()[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_samples(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", str(path), "-n", "5", "--jsonl"]) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]
    for r in records:
        assert r["prompt"].strip() == r["prompt"] and r["prompt"]
        assert "  " not in r["prompt"]
        settings = r["settings"]
        assert settings["width"] % 8 == 0 and settings["height"] % 8 == 0
        assert settings["model"] == "stabilityai/stable-diffusion-2-1"
    assert err == ""


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_expands(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["expand", str(path), "--limit", "3"]) == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == 3


def test_examples_do_not_set_the_model() -> None:
    for path in FILES:
        if path.suffix == ".sdp":
            lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
            assert not any(line.replace(" ", "").startswith("@model=") for line in lines), path


def test_golden_glasses_json_replays_the_original_tool(capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON config gives the original tool's sequence (docs/language.md, The original JSON configs)."""
    import random

    path = EXAMPLES / "golden-glasses.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    rng = random.Random(config["generator_seed"])
    expected = []
    for i in range(5):
        subject = rng.sample(config["subjects"], 1)[0]
        action = rng.sample(config["actions"], 1)[0]
        suffixes = [rng.sample(config[k] + [None], 1)[0] for k in ("suffixes_1", "suffixes_2", "suffixes_3")]
        steps = rng.sample(config["steps"], 1)[0]
        prompt = subject + " " + action + "".join(", " + s for s in suffixes if s)
        expected.append((prompt, steps, i))
    assert main(["sample", str(path), "-n", "5", "--jsonl"]) == 0
    out, _ = capsys.readouterr()
    got = [(r["prompt"], r["settings"]["steps"], r["seed"]) for r in map(json.loads, out.splitlines())]
    assert got == expected


def test_golden_glasses_sdp_and_json_have_the_same_space(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["count", str(EXAMPLES / "golden-glasses.sdp")]) == 0
    sdp_count = capsys.readouterr().out.split()[-1]
    assert main(["count", str(EXAMPLES / "golden-glasses.json")]) == 0
    json_count = capsys.readouterr().out.split()[-1]
    assert sdp_count == json_count == "189"


def test_portrait_negative_names_the_same_medium(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", str(EXAMPLES / "portrait.sdp"), "-n", "40", "--jsonl"]) == 0
    for r in map(json.loads, capsys.readouterr().out.splitlines()):
        medium = r["trace"]["medium"]["text"]
        assert r["prompt"].startswith(medium + " portrait")
        assert r["negative"].endswith("bad " + medium)


def test_wildcards_demo_uses_the_wildcards_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no wildcards/ here: the folder beside the template is used
    assert main(["sample", str(EXAMPLES / "wildcards-demo.sdp"), "-n", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_the_dynamicprompts_example_loads_as_data_and_converts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/dynamicprompts/: read as a template, its emoticons are an error that says
    how to read the pack as data; read as data it checks, and its conversion gives the
    prompts dynamicprompts gives."""
    pytest.importorskip("dynamicprompts")
    from dynamicprompts.generators import RandomPromptGenerator
    from dynamicprompts.wildcards import WildcardManager

    from stable_discovery.language.program import load
    from stable_discovery.plugins import get_sampler

    folder = EXAMPLES / "dynamicprompts"
    template = folder / "prompt.txt"
    assert main(["check", str(template)]) == 2
    err = capsys.readouterr().err
    assert "emoticons.txt:3:1: error: '}' without a matching '{'" in err and "--wildcards-literal" in err
    assert main(["check", str(template), "--wildcards-literal"]) == 0
    assert "warning: [cat|dog] is an optional part here" in capsys.readouterr().err
    converted = tmp_path / "prompt.sdp"
    assert main(["convert", "--from", "dynamicprompts", str(template), "-o", str(converted)]) == 0
    program = load(converted, wildcard_dirs=[folder / "wildcards"])
    ours = {s.prompt for s in get_sampler("combinatorial").samples(program, 0, program.count(), 0)}
    assert len(ours) == program.count() == 160
    # a fresh generator for each prompt: dynamicprompts sets ${animal=!…} once per generator
    manager, text = WildcardManager(folder / "wildcards"), template.read_text(encoding="utf-8")
    theirs = set()
    for seed in range(120):
        (prompt,) = RandomPromptGenerator(manager, seed=seed).generate(text, 1)
        theirs.add(" ".join(prompt.split()))
    assert len(theirs) > 50 and theirs <= ours
