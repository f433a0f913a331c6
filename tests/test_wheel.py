"""The wheel carries the grammar, and an installed wheel finds it (no checkout needed)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO


def _build(out: Path) -> tuple[bool, str]:
    """Build the wheel into ``out``; (done, what went wrong)."""
    attempts = []
    if importlib.util.find_spec("hatchling") is not None:
        attempts.append(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(out),
                str(REPO),
            ]
        )
    if importlib.util.find_spec("build") is not None:
        attempts.append([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)])
    if not attempts:
        return False, "neither hatchling nor build is installed (pip install -e '.[dev]')"
    errors = []
    for command in attempts:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode == 0 and list(out.glob("*.whl")):
            return True, ""
        errors.append(result.stderr[-500:])
    return False, "building the wheel failed (offline?): " + " | ".join(errors)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done, why = _build(out)
    if not done:
        pytest.skip(why)
    (path,) = out.glob("stable_discovery-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked as an installer would put it in site-packages."""
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    return target


def test_wheel_contains_the_grammar(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "stable_discovery/_grammar/sdp.lark" in names
        assert z.read("stable_discovery/_grammar/sdp.lark") == (REPO / "grammar" / "sdp.lark").read_bytes()
        for module in (
            "__init__",
            "language/parser",
            "language/program",
            "space/nodes",
            "sampling/samplers",
            "cli/__init__",
            "sampling/legacy",
            "store/migrations",
        ):
            assert f"stable_discovery/{module}.py" in names
        assert "stable_discovery/py.typed" in names
        assert "stable_discovery/gallery/static/app.js" in names
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "sdp = stable_discovery.cli:entry_point" in z.read(entry_points).decode()


SCRIPT = textwrap.dedent(
    """
    import sys
    import stable_discovery
    from stable_discovery.language.parser import grammar_path
    from stable_discovery.language.program import loads
    from stable_discovery.plugins import get_sampler

    print("PACKAGE", stable_discovery.__file__)
    print("GRAMMAR", grammar_path())
    program = loads("c = red | blue\\nprompt = a <c> {ball|hat}, not <c> again")
    for s in get_sampler("combinatorial").samples(program, 0, program.count(), 0):
        print("PROMPT", s.prompt)
    """
)


def _env(installed: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SDP_DEBUG")}
    env["PYTHONPATH"] = str(installed)
    return env


def test_installed_wheel_finds_its_grammar(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # outside the checkout: no grammar/ folder near
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=_env(installed),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    package = next(line.split(" ", 1)[1] for line in lines if line.startswith("PACKAGE"))
    grammar = next(line.split(" ", 1)[1] for line in lines if line.startswith("GRAMMAR"))
    assert Path(package).is_relative_to(installed)
    assert Path(grammar) == installed / "stable_discovery" / "_grammar" / "sdp.lark"
    assert [line[len("PROMPT ") :] for line in lines if line.startswith("PROMPT")] == [
        "a red ball, not red again",
        "a red hat, not red again",
        "a blue ball, not blue again",
        "a blue hat, not blue again",
    ]


def test_installed_wheel_command_line(installed, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stable_discovery", "expand", "-e", "{a|b} {1|2}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(installed),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["a 1", "a 2", "b 1", "b 2"]
    result = subprocess.run(
        [sys.executable, "-m", "stable_discovery", "check", "-e", "{a|b"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(installed),
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("<-e>:1:5: error: unclosed '{' opened at 1:1")
