"""The names docs/plugins.md tells plugin authors to import exist, the 0.1 names give the
same objects, and each example plugin of the guide works as the guide says. The imports
and the examples are read from the guide's code blocks, so the two cannot drift."""

from __future__ import annotations

import ast
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from stable_discovery import plugins
from stable_discovery.cli.main import main
from tests.helpers import REPO

GUIDE = REPO / "docs" / "plugins.md"


@dataclass(frozen=True)
class Block:
    line: int  # where the code starts in the guide
    code: str


def python_blocks() -> list[Block]:
    text = GUIDE.read_text(encoding="utf-8")
    return [
        Block(text.count("\n", 0, m.start(1)) + 1, m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)
    ]


def import_statements() -> Iterator[tuple[Block, ast.ImportFrom | ast.Import]]:
    """Every import of a ``stable_discovery`` name in the guide's complete code blocks."""
    for block in python_blocks():
        try:
            tree = ast.parse(block.code)
        except SyntaxError:  # a signature line (``def hook(...) -> None``), not a program
            continue
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stable_discovery"):
                yield block, node
            elif isinstance(node, ast.Import) and node.names[0].name.startswith("stable_discovery"):
                yield block, node


IMPORTS = list(import_statements())


def test_the_guide_shows_the_names_plugins_use() -> None:
    shown = {
        f"{node.module}.{a.name}"
        for _, node in IMPORTS
        if isinstance(node, ast.ImportFrom)
        for a in node.names
    }
    for name in (
        "stable_discovery.hookimpl",  # the canonical names
        "stable_discovery.sampling.CombinatorialSampler",
        "stable_discovery.sampling.SampleBuilder",
        "stable_discovery.language.settings.SettingSpec",
        "stable_discovery.backends.BackendError",
        "stable_discovery.plugins.register",
        "stable_discovery.hookspecs.hookimpl",  # the 0.1 names
        "stable_discovery.settings.SettingSpec",
        "stable_discovery.samplers.CombinatorialSampler",
        "stable_discovery.samplers.SampleBuilder",
        "stable_discovery.samplers.get_sampler",
    ):
        assert name in shown, f"docs/plugins.md shows no import of {name}"


@pytest.mark.parametrize(
    ("line", "statement"),
    [
        pytest.param(
            block.line + node.lineno - 1, ast.unparse(node), id=f"plugins.md:{block.line + node.lineno - 1}"
        )
        for block, node in IMPORTS
    ],
)
def test_every_import_the_guide_shows_works(line: int, statement: str) -> None:
    namespace: dict[str, object] = {}
    exec(compile(statement, f"docs/plugins.md:{line}", "exec"), namespace)
    node = ast.parse(statement).body[0]
    assert isinstance(node, (ast.Import, ast.ImportFrom))
    for name in (alias.asname or alias.name for alias in node.names):
        assert namespace[name.split(".")[0]] is not None


def test_the_01_names_are_the_canonical_objects() -> None:
    import stable_discovery
    from stable_discovery import hookspecs, samplers, settings
    from stable_discovery.language import settings as language_settings
    from stable_discovery.plugins import hookspecs as plugin_hookspecs
    from stable_discovery.sampling import samplers as sampling_samplers

    assert hookspecs.hookimpl is plugin_hookspecs.hookimpl is stable_discovery.hookimpl
    assert settings.SettingSpec is language_settings.SettingSpec
    assert samplers.CombinatorialSampler is sampling_samplers.CombinatorialSampler
    assert samplers.SampleBuilder is sampling_samplers.SampleBuilder
    assert samplers.get_sampler is plugins.get_sampler is stable_discovery.get_sampler


# -- the guide's example plugins, each registered and used --------------------------------

TEMPLATE = "colour = red | green | blue\nprompt = a <colour> ball\n@size = 64x64\n@count = 3\n"


def example_plugins() -> dict[str, Block]:
    """The guide's example plugin for each hook: the code blocks with ``@hookimpl``."""
    found = {}
    for block in python_blocks():
        hooks = re.findall(r"^@hookimpl\ndef (\w+)\(", block.code, re.M)
        for hook in hooks:
            found[hook] = block
    return found


def load_example(block: Block) -> types.ModuleType:
    module = types.ModuleType(f"plugins_md_line_{block.line}")
    exec(compile(block.code, f"docs/plugins.md:{block.line}", "exec"), module.__dict__)
    return module


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "balls.sdp"
    path.write_text(TEMPLATE)
    return path


def sdp_run(template: Path, *argv: str) -> int:
    return main(["run", str(template), "--workspace", str(template.parent / "ws"), *argv])


def check_samplers(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", str(template), "--sampler", "reversed"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a blue ball", "a green ball", "a red ball"]


def check_backends(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sdp_run(template, "--backend", "grey") == 0
    for i in range(3):
        with Image.open(template.parent / "ws" / "balls" / f"{i:05d}.png") as im:
            assert im.size == (64, 64) and im.mode == "RGB"
            seed = int(im.info["parameters"].split("Seed: ")[1].split(",")[0])
            assert im.getpixel((0, 0)) == (seed % 256,) * 3


def check_sinks(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sdp_run(template, "--backend", "dummy", "--sink", "prompts") == 0
    prompts = (template.parent / "ws" / "balls" / "prompts.txt").read_text().splitlines()
    assert sorted(prompts) == ["a blue ball", "a green ball", "a red ball"]


def check_settings(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template.write_text(TEMPLATE + "@lora_scale = 0.5 | 0.8\n")
    assert main(["expand", str(template), "--jsonl"]) == 0
    out = capsys.readouterr().out
    assert '"lora_scale": 0.5' in out and '"lora_scale": 0.8' in out


def check_image_saved(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sdp_run(template, "--backend", "dummy") == 0
    folder = template.parent / "ws" / "balls"
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("balls #")]
    assert sorted(lines) == [f"balls #{i}: {folder / f'{i:05d}.png'}" for i in range(3)]


def check_run_finished(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sdp_run(template, "--backend", "dummy", "--count", "2") == 0
    assert "balls finished: 2 of 2 images" in capsys.readouterr().out.splitlines()


CHECKS: dict[str, Callable[[Path, pytest.CaptureFixture[str]], None]] = {
    "register_samplers": check_samplers,
    "register_backends": check_backends,
    "register_sinks": check_sinks,
    "register_settings": check_settings,
    "image_saved": check_image_saved,
    "run_finished": check_run_finished,
}


def test_every_example_plugin_is_checked() -> None:
    assert set(example_plugins()) == set(CHECKS)


@pytest.mark.parametrize("hook", sorted(CHECKS))
def test_example_plugin_works(hook: str, template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    block = example_plugins()[hook]
    name = f"docs-example-{hook}"
    plugins.register(load_example(block), name=name)
    try:
        CHECKS[hook](template, capsys)
    finally:
        plugins.unregister(name)
