"""Arguments and helpers that several ``sdp`` commands share: template and workspace
options, loading a template, opening the store, finding a backend, printing samples."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from stable_discovery.errors import UsageError

__all__ = [
    "SAMPLER_HELP",
    "add_template_args",
    "add_workspace_arg",
    "load_template",
    "template_sampler",
    "open_store",
    "backend_factory",
    "emit",
    "plural",
    "nonneg",
    "integer",
    "stars",
]


#: ``--sampler``'s help: the built-in samplers (``tests/test_cli.py`` checks the list
#: against the plugins), and where the others are listed.
SAMPLER_HELP = (
    "random | combinatorial | shuffle | legacy | exploit (weights learned from an earlier "
    "experiment: @exploit = NAME), or an installed plugin's: `sdp plugins` lists them "
    "(default: @sampler, else random)"
)


def add_template_args(p: argparse.ArgumentParser, allow_text: bool = True) -> None:
    p.add_argument("file", nargs="?", type=Path, help="a .sdp template or an original JSON config")
    if allow_text:
        p.add_argument("-e", "--expr", metavar="TEMPLATE", help="template text instead of a file")
    p.add_argument(
        "--wildcards",
        metavar="DIR",
        action="append",
        type=wildcard_folder,
        help="a wildcard folder of .txt, .yaml/.yml and .json wildcard files, links followed "
        "(repeatable; default: wildcards/ beside the template)",
    )
    p.add_argument(
        "--wildcards-literal",
        action="store_true",
        help="read wildcard files as data, as dynamicprompts does: only {…}, __…__, ${…}, %%{…}, "
        "weights and # comments are special; <…>, […], backslashes and unmatched braces are text "
        "(as @wildcard_lines = literal; a file's first line `# sdp: template` or `# sdp: literal` "
        "decides for it)",
    )


def wildcard_folder(value: str) -> Path:
    """``--wildcards DIR``: a folder that exists (a typo would otherwise surface as an
    unknown wildcard)."""
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such folder: {value}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{value} is a file, not a folder: give the folder that holds the wildcard files"
        )
    return path


def load_template(args: argparse.Namespace) -> Any:
    from stable_discovery import plugins
    from stable_discovery.language.program import load, loads

    extra = plugins.setting_specs()
    text = getattr(args, "expr", None)
    literal = bool(getattr(args, "wildcards_literal", False))
    notes = bool(getattr(args, "verbose", False))
    if text is not None and args.file is not None:
        raise UsageError("give a template file or -e TEXT, not both")
    if text is not None:
        return loads(text, "<-e>", args.wildcards or (), extra, wildcards_literal=literal, notes=notes)
    if args.file is None:
        raise UsageError("no template: give a file, or -e 'TEMPLATE TEXT'")
    return load(args.file, args.wildcards, extra, wildcards_literal=literal, notes=notes)


def template_sampler(program: Any, requested: str | None = None) -> Any:
    """The sampler a command uses, checked against the program: an unknown ``@sampler``
    is an error at its place in the template, and ``legacy`` needs the original shape."""
    from stable_discovery import plugins
    from stable_discovery.errors import TemplateError
    from stable_discovery.plugins import get_sampler

    name = requested or program.setting("sampler", "random")
    if requested is None and name not in plugins.samplers():
        info = program.settings["sampler"]
        raise TemplateError(
            f"unknown sampler {name!r}",
            program.source,
            info.start,
            hint="known samplers: " + ", ".join(plugins.samplers()),
        )
    sampler = get_sampler(name)
    if name == "legacy":
        from stable_discovery.language.legacy_config import config_of

        config_of(program)
    return sampler


def add_workspace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workspace",
        type=Path,
        metavar="DIR",
        help="where experiments are kept (default: $SDP_WORKSPACE, else ./sdp-runs)",
    )


def open_store(args: argparse.Namespace, mode: str = "read") -> Any:
    """The workspace's store: ``read`` (the default) and ``write`` need it to exist and
    create nothing; ``create`` (``sdp run``) makes it when missing."""
    from stable_discovery.store.database import Store, workspace_path

    return Store(workspace_path(args.workspace), mode=mode)


def backend_factory(name: str) -> Any:
    from stable_discovery import plugins

    factories = plugins.backends()
    if name not in factories:
        raise UsageError(f"unknown backend {name!r}; installed backends: {', '.join(factories)}")
    return factories[name]


def emit(samples: Iterable[Any], jsonl: bool, out: TextIO) -> None:
    write = out.write
    if jsonl:
        dumps = json.dumps
        for s in samples:
            write(dumps(s.to_dict(), ensure_ascii=False) + "\n")
    else:
        for s in samples:
            write(s.prompt + "\n")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


#: The largest number a count, an index or a seed may be (the store's 64-bit integers).
MAX_NUMBER = 2**63 - 1


def nonneg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    if value > MAX_NUMBER:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_NUMBER} (2^63 - 1), got {value}")
    return value


def integer(text: str) -> int:
    """A whole number that the run store can hold (a seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not -MAX_NUMBER - 1 <= value <= MAX_NUMBER:
        raise argparse.ArgumentTypeError(f"expected a number from -2^63 to 2^63 - 1, got {value}")
    return value


def stars(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"stars are 1 to 5 (0 clears), not {text!r}") from None
    if not 0 <= value <= 5:
        raise argparse.ArgumentTypeError(f"stars are 1 to 5 (0 clears), not {value}")
    return value
