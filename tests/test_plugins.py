"""The plugin hooks: each documented with its exact signature, each exercised here."""

from __future__ import annotations

import csv
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from stable_discovery import plugins
from stable_discovery.cli.main import main
from stable_discovery.language.settings import SettingSpec
from stable_discovery.plugins import hookspecs
from stable_discovery.plugins.hookspecs import hookimpl
from stable_discovery.sampling.samplers import CombinatorialSampler, SampleBuilder
from tests.helpers import REPO

GUIDE = REPO / "docs" / "plugins.md"
TEMPLATE = "colour = red | green | blue\nprompt = a <colour> ball\n@size = 64x64\n@count = 6\n"


def hook_names() -> list[str]:
    return [n for n, f in vars(hookspecs).items() if hasattr(f, "stable_discovery_spec")]


@pytest.fixture
def tmpl(tmp_path: Path) -> Path:
    path = tmp_path / "balls.sdp"
    path.write_text(TEMPLATE)
    return path


@pytest.fixture
def registered():
    names: list[str] = []

    def add(obj, name):
        plugins.register(obj, name=name)
        names.append(name)

    yield add
    for name in names:
        plugins.unregister(name)


def run(tmp_path: Path, *argv: str) -> int:
    return main(["run", *argv, "--workspace", str(tmp_path / "ws")])


# -- the rule: docstring, guide entry with the exact signature, an example, a test ---------


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_is_documented_and_tested(name: str) -> None:
    spec = getattr(hookspecs, name)
    assert spec.__doc__ and len(spec.__doc__.strip()) > 40, f"{name} needs a docstring"
    guide = GUIDE.read_text()
    signature = f"def {name}{inspect.signature(spec)}".replace("'", "")
    assert signature in guide, f"docs/plugins.md lacks the exact signature: {signature}"
    section = guide.split(f"### {name}\n", 1)
    assert len(section) == 2, f"docs/plugins.md has no section for {name}"
    body = section[1].split("\n### ", 1)[0]
    assert body.count("```python") >= 2, f"the guide's {name} section needs an example"
    tests = Path(__file__).read_text()
    assert re.search(rf"^def test_hook_{name}\(", tests, re.M), f"no test_hook_{name} here"


# -- one test per hook -------------------------------------------------------------------


class Reversed(CombinatorialSampler):
    name = "reversed"

    def samples(self, program, start, stop, seed):
        n = program.count()
        builder = SampleBuilder(program, seed)
        for i in range(start, min(stop, n)):
            yield self._decode(program, builder, n - 1 - i, i)


def test_hook_register_samplers(registered, tmpl, tmp_path, capsys) -> None:
    class P:
        @hookimpl
        def register_samplers(self, register):
            register("reversed", Reversed)

    registered(P(), "test-reversed")
    assert main(["sample", str(tmpl), "--sampler", "reversed", "-n", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a blue ball", "a green ball", "a red ball"]
    assert run(tmp_path, str(tmpl), "--backend", "dummy", "--sampler", "reversed", "--count", "3") == 0


class Grey:
    name = "grey"
    calls = 0

    def describe_model(self, model):
        return "grey"

    def generate(self, batch):
        Grey.calls += 1
        return [Image.new("RGB", (batch.key.width, batch.key.height), (s.seed,) * 3) for s in batch.samples]

    def close(self):
        pass


def test_hook_register_backends(registered, tmpl, tmp_path) -> None:
    class P:
        @hookimpl
        def register_backends(self, register):
            register("grey", lambda **options: Grey())

    registered(P(), "test-grey")
    Grey.calls = 0
    assert run(tmp_path, str(tmpl), "--backend", "grey", "--batch", "2") == 0
    assert Grey.calls == 3
    with Image.open(tmp_path / "ws" / "balls" / "00004.png") as im:
        assert im.getpixel((0, 0)) == (4, 4, 4)


def test_hook_register_sinks(registered, tmpl, tmp_path) -> None:
    seen: list[tuple[int, str]] = []

    class Sink:
        def __init__(self, folder):
            self.folder = folder

        def write(self, record, image, path):
            seen.append((record["index"], Path(path).name))

        def close(self):
            seen.append((-1, "closed"))

    class P:
        @hookimpl
        def register_sinks(self, register):
            register("remember", Sink)

    registered(P(), "test-sink")
    assert run(tmp_path, str(tmpl), "--backend", "dummy", "--sink", "remember") == 0
    assert sorted(seen[:-1]) == [(i, f"{i:05d}.png") for i in range(6)]
    assert seen[-1] == (-1, "closed")


def test_hook_register_settings(registered, tmp_path, capsys) -> None:
    path = tmp_path / "lora.sdp"
    path.write_text("prompt = a cat\n@lora_scale = 0.5 | 0.8\n")
    assert main(["check", str(path)]) == 2
    assert "unknown setting @lora_scale" in capsys.readouterr().err

    class P:
        @hookimpl
        def register_settings(self, register):
            register(SettingSpec("lora_scale", float, "LoRA strength"))

    registered(P(), "test-setting")
    assert main(["expand", str(path), "--jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.count('"lora_scale": 0.5') for line in lines] == [1, 0]
    assert '"lora_scale": {"index": 1, "text": "0.8"}' in lines[1]


def test_hook_image_saved(registered, tmpl, tmp_path) -> None:
    saved: list[tuple[str, int, str]] = []

    class P:
        @hookimpl
        def image_saved(self, experiment, record, path):
            assert Path(path).exists()
            saved.append((experiment, record["index"], Path(path).name))

    registered(P(), "test-saved")
    assert run(tmp_path, str(tmpl), "--backend", "dummy") == 0
    assert sorted(saved) == [("balls", i, f"{i:05d}.png") for i in range(6)]


def test_hook_run_finished(registered, tmpl, tmp_path) -> None:
    finished: list[tuple] = []

    class P:
        @hookimpl
        def run_finished(self, experiment, done, count, interrupted):
            finished.append((experiment, done, count, interrupted))

    registered(P(), "test-finished")
    assert run(tmp_path, str(tmpl), "--backend", "dummy", "--count", "4", "--name", "four") == 0
    assert finished == [("four", 4, 4, False)]


def test_plugins_command_lists_builtins(capsys) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "stable_discovery.plugins.builtin.samplers (built-in)" in out
    assert "register_backends" in out and "backends: dummy, diffusers" in out


# -- the separately installable example plugin, through its entry point -------------------


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO / "plugins" / "sdp-csv-manifest"),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail("pip could not install the example plugin:\n" + proc.stderr[-2000:])
    return target


def sdp(site: Path, *argv: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop(plugins.ENV_PLUGINS, None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "stable_discovery", *argv], capture_output=True, text=True, env=env
    )


@pytest.mark.slow
def test_example_plugin_runs_an_experiment(installed_plugin, tmpl, tmp_path) -> None:
    listed = sdp(installed_plugin, "plugins")
    assert "csv_manifest" in listed.stdout and "register_sinks" in listed.stdout
    proc = sdp(
        installed_plugin,
        "run",
        str(tmpl),
        "--backend",
        "dummy",
        "--sink",
        "csv",
        "--workspace",
        str(tmp_path / "ws"),
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader((tmp_path / "ws" / "balls" / "manifest.csv").open()))
    assert rows[0][:3] == ["index", "file", "seed"]
    assert sorted(int(r[0]) for r in rows[1:]) == list(range(6))
    assert {r[3] for r in rows[1:]} == {"a red ball", "a green ball", "a blue ball"}


@pytest.mark.slow
def test_environment_variable_limits_plugins(installed_plugin, tmpl, tmp_path) -> None:
    proc = sdp(
        installed_plugin,
        "run",
        str(tmpl),
        "--backend",
        "dummy",
        "--sink",
        "csv",
        "--workspace",
        str(tmp_path / "ws"),
        env_extra={"SDP_PLUGINS": ""},
    )
    assert proc.returncode == 2
    assert "unknown sink 'csv'" in proc.stderr and "Traceback" not in proc.stderr
    listed = sdp(installed_plugin, "plugins", env_extra={"SDP_PLUGINS": "csv_manifest"})
    assert "csv_manifest" in listed.stdout


# -- the suite ignores whatever plugins are installed ----------------------------------------

FAKE_PLUGIN = """
from PIL import Image

from stable_discovery import hookimpl
from stable_discovery.language.settings import SettingSpec


class White:
    name = "white"

    def describe_model(self, model):
        return "white"

    def generate(self, batch):
        return [Image.new("RGB", (batch.key.width, batch.key.height), "white") for _ in batch.samples]

    def close(self):
        pass


@hookimpl
def register_backends(register):
    register("white", lambda **options: White())


@hookimpl
def register_settings(register):
    register(SettingSpec("lora_scale", float, "a setting the tests expect to be unknown"))
"""


@pytest.fixture(scope="module")
def fake_installed_plugin(tmp_path_factory) -> Path:
    """A folder that, on sys.path, holds an installed distribution with an entry point
    in the group ``stable_discovery`` whose plugin would upset the suite."""
    site = tmp_path_factory.mktemp("fake-site")
    (site / "sdp_fake_plugin.py").write_text(FAKE_PLUGIN)
    info = site / "sdp_fake_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sdp-fake-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[stable_discovery]\nfake = sdp_fake_plugin\n")
    return site


@pytest.mark.slow
def test_the_suite_passes_with_a_third_party_plugin_installed(fake_installed_plugin) -> None:
    listed = sdp(fake_installed_plugin, "plugins")  # SDP_PLUGINS unset: the plugin loads
    assert "fake (version 1.0)" in listed.stdout
    assert "white" in next(line for line in listed.stdout.splitlines() if line.startswith("backends:"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake_installed_plugin), str(REPO)]))
    env.pop(plugins.ENV_PLUGINS, None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_plugins.py",
            "tests/test_public_api.py",
            "-k",
            "not installed and not example_plugin_runs and not environment_variable",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
