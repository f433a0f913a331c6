"""The template commands of the ``sdp`` command line: check, count, expand, sample, convert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stable_discovery.cli.main import main
from tests.helpers import REPO

GOLDEN = textwrap.dedent(
    """\
    # golden-glasses.sdp
    subject = a Golden Retriever wearing sunglasses
    action  = walking on a tropical beach
            | floating in space
            | 3:: floating in space with galaxies in the background
    style   = vector graphics | art deco
    palette = {teal and pink - synthwave style|teal and pink}
    unused  = nothing

    prompt   = <subject> <action>[, <style>][, <palette>]
    negative = blurry, lowres

    @steps    = 40 | 50 | 60
    @guidance = 7.5
    @size     = 768x768
    @count    = 10000
    @seed     = 1338
    @sampler  = random
    """
)

BIG = " ".join("{" + "|".join(f"w{i}x{j}" for j in range(10)) + "}" for i in range(30))


@pytest.fixture
def golden(tmp_path) -> Path:
    path = tmp_path / "golden.sdp"
    path.write_text(GOLDEN, encoding="utf-8")
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def jsonl(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


# ---------------------------------------------------------------------------------------
# check and count


def test_check(capsys, golden):
    code, out, err = run(capsys, "check", golden)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{golden}: ok"
    assert "slots:" in lines
    assert any(line.split() == ["<action>", "3", "alternatives"] for line in lines)
    assert any(line.split() == ["<subject>", "1", "alternative"] for line in lines)
    assert any(line.split()[:1] == ["<unused>"] and "(unused)" in line for line in lines)
    assert "settings:" in lines
    assert any(line.split() == ["@steps", "40", "|", "50", "|", "60", "(sampled)"] for line in lines)
    assert any(line.split() == ["@guidance", "7.5"] for line in lines)
    assert "sampler: random" in lines
    assert "count: 10,000" in lines
    # 3 actions x 3 (no style, or one of 2) x 3 (no palette, or one of 2) x 3 steps
    assert lines[-1] == "combinations: 81"


def test_check_bare_template_and_shared_slots(capsys, tmp_path):
    path = tmp_path / "bare.sdp"
    path.write_text("{a|b} c\n", encoding="utf-8")
    code, out, _ = run(capsys, "check", path)
    assert code == 0
    assert "a single template (no slot definitions)" in out
    assert out.splitlines()[-1] == "combinations: 2"
    code, out, _ = run(capsys, "check", "-e", "c = x | y\nprompt = <c> <c>")
    assert code == 0 and "(used in several places)" in out and out.startswith("<-e>: ok")


def test_count(capsys, golden):
    code, out, err = run(capsys, "count", golden)
    assert (code, out, err) == (0, "81\n", "")


def test_count_prints_big_integers_in_full(capsys):
    code, out, _ = run(capsys, "count", "-e", BIG)
    assert code == 0
    assert out.splitlines()[-1] == "1" + "0" * 30


def test_count_of_a_json_config(capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "subjects": ["a", "b"],
                "actions": ["x"],
                "suffixes_1": ["s", "t"],
                "steps": [10, 20],
                "num_configs": 5,
                "generator_seed": 1,
            }
        )
    )
    code, out, _ = run(capsys, "count", path)
    assert code == 0 and out == f"{2 * 1 * 3 * 2}\n"


# ---------------------------------------------------------------------------------------
# expand


def test_expand_in_odometer_order(capsys):
    code, out, err = run(capsys, "expand", "-e", "{a|b} {1|2|3}")
    assert code == 0 and err == ""
    assert out.splitlines() == ["a 1", "a 2", "a 3", "b 1", "b 2", "b 3"]


def test_expand_limit(capsys, golden):
    code, out, _ = run(capsys, "expand", golden, "--limit", 4)
    assert code == 0
    assert out.splitlines() == [
        "a Golden Retriever wearing sunglasses walking on a tropical beach",
    ] * 3 + [
        "a Golden Retriever wearing sunglasses walking on a tropical beach, teal and pink - synthwave style"
    ]
    code, out, _ = run(capsys, "expand", golden, "--limit", 0)
    assert code == 0 and out == ""


def test_expand_limit_past_the_end(capsys):
    code, out, _ = run(capsys, "expand", "-e", "{a|b}", "--limit", 10)
    assert code == 0 and out.splitlines() == ["a", "b"]


def test_expand_jsonl_fields(capsys, golden):
    code, out, _ = run(capsys, "expand", golden, "--jsonl", "--limit", 5)
    assert code == 0
    records = jsonl(out)
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]
    first = records[0]
    assert set(first) == {"index", "prompt", "negative", "settings", "seed", "trace"}
    assert first["prompt"] == "a Golden Retriever wearing sunglasses walking on a tropical beach"
    assert first["negative"] == "blurry, lowres"
    assert first["seed"] == 0
    assert first["settings"]["steps"] == 40
    assert first["settings"]["guidance"] == 7.5
    assert (first["settings"]["width"], first["settings"]["height"]) == (768, 768)
    assert first["trace"] == {
        "subject": {"index": 0, "text": "a Golden Retriever wearing sunglasses"},
        "action": {"index": 0, "text": "walking on a tropical beach"},
        "steps": {"index": 0, "text": "40"},
    }
    assert records[1]["trace"]["steps"] == {"index": 1, "text": "50"}
    assert records[3]["trace"]["palette"] == {
        "index": 0,
        "text": "{teal and pink - synthwave style|teal and pink}",
    }


def test_expand_huge_template_with_limit(capsys):
    code, out, _ = run(capsys, "expand", "-e", BIG, "--limit", 2)
    assert code == 0
    assert out.splitlines() == [
        " ".join(f"w{i}x0" for i in range(30)),
        " ".join(f"w{i}x0" for i in range(29)) + " w29x1",
    ]


def test_expand_unicode_output(capsys):
    code, out, _ = run(capsys, "expand", "-e", "{café|naïve} 🐕", "--jsonl")
    assert code == 0
    assert [r["prompt"] for r in jsonl(out)] == ["café 🐕", "naïve 🐕"]
    assert "café" in out  # not \u-escaped


# ---------------------------------------------------------------------------------------
# wildcards


def test_wildcards_option(capsys, tmp_path):
    w = tmp_path / "w"
    w.mkdir()
    (w / "colour.txt").write_text("red\nblue\n", encoding="utf-8")
    code, out, _ = run(capsys, "expand", "-e", "a __colour__ ball", "--wildcards", w)
    assert code == 0 and out.splitlines() == ["a red ball", "a blue ball"]


def test_wildcards_option_is_repeatable(capsys, tmp_path):
    for name, content in (("w1", "one\n"), ("w2", "two\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(content, encoding="utf-8")
    code, out, _ = run(
        capsys,
        "expand",
        "-e",
        "__w1__ __w2__",
        "--wildcards",
        tmp_path / "w1",
        "--wildcards",
        tmp_path / "w2",
    )
    assert code == 0 and out == "one two\n"


def test_default_wildcards_beside_the_template(capsys, tmp_path, monkeypatch):
    (tmp_path / "t" / "wildcards").mkdir(parents=True)
    (tmp_path / "t" / "wildcards" / "c.txt").write_text("red\nblue\n", encoding="utf-8")
    template = tmp_path / "t" / "x.sdp"
    template.write_text("prompt = __c__\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the template's folder
    code, out, _ = run(capsys, "expand", template)
    assert code == 0 and out.splitlines() == ["red", "blue"]


def test_default_wildcards_for_expr_is_the_current_folder(capsys, tmp_path, monkeypatch):
    (tmp_path / "wildcards").mkdir()
    (tmp_path / "wildcards" / "c.txt").write_text("here\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "sample", "-e", "__c__", "-n", 1)
    assert code == 0 and out == "here\n"


def test_unknown_wildcard_is_an_error(capsys, tmp_path):
    code, out, err = run(capsys, "expand", "-e", "__nope__", "--wildcards", tmp_path)
    assert code == 2 and out == ""
    assert err.startswith("<-e>:1:1: error: unknown wildcard __nope__")
    assert "hint: wildcard folders searched:" in err


# ---------------------------------------------------------------------------------------
# sample


@pytest.mark.slow
def test_sample_uses_count_and_seed_from_the_template(capsys, golden):
    code, out, _ = run(capsys, "sample", golden, "--jsonl")
    assert code == 0
    records = jsonl(out)
    assert len(records) == 10000
    assert [r["index"] for r in records[:3]] == [0, 1, 2]
    assert [r["seed"] for r in records[:3]] == [0, 1, 2]
    code, again, _ = run(capsys, "sample", golden, "--jsonl", "--seed", 1338, "-n", 50)
    assert jsonl(again) == records[:50]


def test_sample_n_and_seed(capsys, golden):
    code, out, _ = run(capsys, "sample", golden, "-n", 20, "--seed", 5)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 20
    _, again, _ = run(capsys, "sample", golden, "-n", 20, "--seed", 5)
    assert again.splitlines() == lines
    _, other, _ = run(capsys, "sample", golden, "-n", 20, "--seed", 6)
    assert other.splitlines() != lines


def test_sample_index(capsys, golden):
    _, out, _ = run(capsys, "sample", golden, "-n", 30, "--jsonl", "--seed", 2)
    records = jsonl(out)
    for i in (0, 17, 29):
        code, one, _ = run(capsys, "sample", golden, "--index", i, "--jsonl", "--seed", 2)
        assert code == 0 and jsonl(one) == [records[i]]
    code, one, _ = run(capsys, "sample", golden, "--index", 10**6, "--jsonl")
    assert code == 0 and jsonl(one)[0]["index"] == 10**6


@pytest.mark.parametrize("sampler", ["combinatorial", "shuffle"])
def test_sample_other_samplers(capsys, golden, sampler):
    code, out, err = run(capsys, "sample", golden, "--sampler", sampler, "-n", 1000, "--jsonl")
    assert code == 0
    records = jsonl(out)
    assert len(records) == 81  # the whole space, and a note that says so
    assert "note: -n 1000 is more than the 81 prompts" in err
    keys = {(r["prompt"], r["settings"]["steps"]) for r in records}
    assert len(keys) == 81
    code, one, _ = run(capsys, "sample", golden, "--sampler", sampler, "--index", 50, "--jsonl")
    assert jsonl(one) == [records[50]]


def test_sample_combinatorial_equals_expand(capsys, golden):
    _, expanded, _ = run(capsys, "expand", golden, "--jsonl")
    _, sampled, _ = run(capsys, "sample", golden, "--sampler", "combinatorial", "--jsonl")
    assert sampled == expanded


def test_sample_index_past_the_end(capsys):
    code, out, err = run(capsys, "sample", "-e", "{a|b}", "--sampler", "combinatorial", "--index", 2)
    assert code == 2 and out == ""
    assert "--index 2 is past the last sample (1)" in err


def test_sample_negative_index(capsys):
    code, _, err = run(capsys, "sample", "-e", "x", "--index", -1)
    assert code == 2 and "--index must be 0 or more" in err


def test_sample_random_needs_a_count(capsys):
    code, out, err = run(capsys, "sample", "-e", "{a|b}")
    assert code == 2 and out == ""
    assert "how many samples?" in err


def test_sample_combinatorial_without_count_gives_the_whole_space(capsys):
    code, out, _ = run(capsys, "sample", "-e", "{a|b}", "--sampler", "combinatorial")
    assert code == 0 and out.splitlines() == ["a", "b"]


def test_sample_unknown_sampler(capsys):
    code, _, err = run(capsys, "sample", "-e", "x", "--sampler", "nope", "-n", 1)
    assert code == 2 and "unknown sampler 'nope'" in err


def test_sample_legacy_json(capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "subjects": ["a", "b"],
                "actions": ["x", "y"],
                "steps": [10, 20],
                "num_configs": 7,
                "generator_seed": 3,
            }
        )
    )
    code, out, _ = run(capsys, "sample", path, "--jsonl")
    assert code == 0
    records = jsonl(out)
    assert len(records) == 7
    assert set(records[0]["trace"]) == {"subject", "action", "steps"}
    code, one, _ = run(capsys, "sample", path, "--jsonl", "--index", 5)
    assert jsonl(one) == [records[5]]


def test_sample_settings_in_jsonl(capsys):
    code, out, _ = run(capsys, "sample", "-e", "x", "-n", 1, "--jsonl")
    assert code == 0
    (record,) = jsonl(out)
    assert record["trace"] == {} and record["negative"] == ""
    assert record["settings"] == {
        "steps": 50,
        "guidance": 7.5,
        "width": 768,
        "height": 768,
        "model": "stabilityai/stable-diffusion-2-1",
        "scheduler": "ddim",
    }


# ---------------------------------------------------------------------------------------
# bad input: exit status 2, the message on stderr, nothing on stdout


@pytest.mark.parametrize("command", ["check", "count", "expand", "sample"])
def test_bad_template_file(capsys, tmp_path, command):
    path = tmp_path / "bad.sdp"
    path.write_text("subject = dog\nprompt = <subjet> {a|b\n", encoding="utf-8")
    code, out, err = run(capsys, command, path)
    assert code == 2 and out == ""
    assert err.splitlines()[0] == f"{path}:2:23: error: unclosed '{{' opened at 2:19"
    assert err.splitlines()[1] == "    prompt = <subjet> {a|b"
    assert err.splitlines()[2] == "    " + " " * 22 + "^"


def test_bad_slot_name_with_suggestion(capsys, tmp_path):
    path = tmp_path / "bad.sdp"
    path.write_text("subject = dog\nprompt = <subjet>\n", encoding="utf-8")
    code, _, err = run(capsys, "check", path)
    assert code == 2
    assert err.splitlines()[0] == f"{path}:2:10: error: unknown slot <subjet>: did you mean <subject>?"


def test_bad_expr(capsys):
    code, out, err = run(capsys, "expand", "-e", "a}")
    assert code == 2 and out == ""
    assert (
        err
        == "<-e>:1:2: error: '}' without a matching '{'\n    a}\n     ^\nhint: write \\} for a literal '}'\n"
    )


def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "count", tmp_path / "nope.sdp")
    assert code == 2 and "template file not found" in err


def test_file_and_expr_together(capsys, golden):
    code, _, err = run(capsys, "count", golden, "-e", "x")
    assert code == 2 and "not both" in err


def test_no_template(capsys):
    code, _, err = run(capsys, "count")
    assert code == 2 and "no template" in err


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "usage: sdp" in out


def test_bad_option_value_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sample", "-e", "x", "-n", "-3"])
    assert info.value.code == 2
    assert "expected 0 or more" in capsys.readouterr().err


def test_convert_without_a_file(capsys):
    code, _, err = run(capsys, "convert")
    assert code == 2 and "give the file to convert: a JSON generator config" in err


# ---------------------------------------------------------------------------------------
# as a separate process


def sdp(*argv, cwd=None, stdin=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SDP_DEBUG", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "stable_discovery", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe\x00garbage",
        b"prompt = {" * 5000,
        b"{" * 10000 + b"}" * 10000,
        b"subject = x\nprompt = <subjet>",
        b"\x00",
        b"@steps = many\nprompt = x",
    ],
)
def test_no_traceback_for_bad_input(tmp_path, content):
    path = tmp_path / "bad.sdp"
    path.write_bytes(content)
    for command in ("check", "expand"):
        result = sdp(command, path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "internal error" not in result.stderr
        assert result.stderr.startswith(str(path))
        assert result.stdout == ""


@pytest.mark.slow
def test_no_traceback_for_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"subjects": 3, "actions": ["a"], "steps": [1], "num_configs": 1, "generator_seed": 1}')
    result = sdp("sample", path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "'subjects' must be a list of strings" in result.stderr


IMPORTS = """
import sys
from stable_discovery.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["count", "-e", "{a|b}"],
        ["check", "-e", "x"],
        ["expand", "-e", "{a|b}"],
        ["sample", "-e", "x", "-n", "3"],
    ],
)
def test_template_commands_do_not_import_torch(argv):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS, *argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "HEAVY:"


@pytest.mark.slow
def test_expand_huge_template_into_head_exits_cleanly(tmp_path):
    path = tmp_path / "big.sdp"
    path.write_text(BIG + "\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = (
        f'"{sys.executable}" -m stable_discovery expand "{path}" | head -1; echo "STATUS:${{PIPESTATUS[0]}}"'
    )
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    lines = result.stdout.splitlines()
    assert lines[0] == " ".join(f"w{i}x0" for i in range(30))
    assert lines[-1] == "STATUS:0"
    assert "Traceback" not in result.stderr and "Error" not in result.stderr


@pytest.mark.slow
def test_version_and_help():
    result = sdp("--help")
    assert result.returncode == 0
    for command in ("check", "count", "expand", "sample", "convert"):
        assert command in result.stdout
    assert sdp("--version").stdout.startswith("sdp ")


@pytest.mark.slow
def test_count_with_more_digits_than_python_prints_by_default(capsys):
    # 10**5000: past Python's default limit of 4300 digits for int -> str
    code, out, err = run(capsys, "count", "-e", "{0|1|2|3|4|5|6|7|8|9}" * 5000)
    assert code == 0, err
    assert out == "1" + "0" * 5000 + "\n"
    code, out, err = run(capsys, "check", "-e", "{0|1|2|3|4|5|6|7|8|9}" * 5000)
    assert code == 0, err
    assert out.splitlines()[-1] == "combinations: 100" + ",000" * 1666


def test_a_run_of_more_than_a_combinatorial_template_makes_is_refused_with_its_place(capsys, tmp_path):
    tmpl = tmp_path / "c.sdp"
    tmpl.write_text("prompt = a {cat|dog} in {rain|snow}\n@sampler = combinatorial\n@count = 10\n")
    for argv, asked, fix in (
        (
            ("run", str(tmpl), "--backend", "dummy", "--workspace", str(tmp_path / "ws")),
            f"{tmpl}:3:1: @count = 10",
            "lower @count to 4",
        ),
        (
            ("run", str(tmpl), "--backend", "dummy", "--count", "5", "--workspace", str(tmp_path / "ws")),
            "--count 5",
            "--count 4",
        ),
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == ""
        assert asked in err and "more than the 4 combinations" in err and fix in err
        assert "--sampler random" in err
    assert not (tmp_path / "ws").exists()  # refused before the store is made
    code, out, err = run(capsys, "sample", str(tmpl))  # a preview shows them all, and says so
    assert code == 0 and len(out.splitlines()) == 4
    assert "note: @count = 10 is more than the 4 prompts the combinatorial sampler makes" in err
    code, out, err = run(capsys, "sample", str(tmpl), "-n", "4")
    assert code == 0 and len(out.splitlines()) == 4 and err == ""


def test_a_run_of_no_images_is_refused(capsys, tmp_path):
    tmpl = tmp_path / "z.sdp"
    tmpl.write_text("prompt = a {cat|dog}\n@count = 0\n")
    ws = str(tmp_path / "ws")
    code, _, err = run(capsys, "run", str(tmpl), "--backend", "dummy", "--workspace", ws)
    assert code == 2 and f"{tmpl}:2:1: @count = 0: a run makes at least one image" in err
    code, _, err = run(capsys, "run", str(tmpl), "--backend", "dummy", "--workspace", ws, "--count", "0")
    assert code == 2 and "--count 0: a run makes at least one image" in err


def test_convert_refuses_a_file_that_is_no_json_config_and_says_what_it_reads(capsys, tmp_path):
    tmpl = tmp_path / "t.sdp"
    tmpl.write_text("prompt = a cat | a dog\n")
    code, out, err = run(capsys, "convert", tmpl)
    assert code == 2 and out == ""
    assert f"{tmpl}:1:1: error: not a JSON generator config" in err
    assert "--from dynamicprompts" in err and "needs no converting" in err


def test_a_wildcards_folder_that_is_not_there_or_is_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "w.yaml").write_text("a:\n  - x\n")
    for value, says in (
        (tmp_path / "nope", "no such folder"),
        (tmp_path / "w.yaml", "is a file, not a folder"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["check", "-e", "__a__", "--wildcards", str(value)])
        assert info.value.code == 2
        assert says in capsys.readouterr().err
