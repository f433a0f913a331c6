"""The documents say what the command line does: the options ``--help`` lists are in
the README or the docs, the ``--json`` key list of ``sdp stats`` matches its output,
``--sampler``'s help names every built-in sampler, and the README's ``sdp run``
examples, run in order in one workspace, never meet a refusal the page does not show."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from stable_discovery import plugins
from stable_discovery.analysis.stats import StatsReport, ValueStats
from stable_discovery.cli.main import build_parser
from stable_discovery.language.variables import KINDS
from tests.helpers import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
STATS_DOC = (REPO / "docs" / "stats-refine.md").read_text(encoding="utf-8")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_in_the_readme() -> None:
    for name in subcommands():
        assert re.search(rf"`sdp {re.escape(name)}\b", README), f"README.md never shows `sdp {name}`"
    assert "sdp --version" in README


def test_options_the_help_has_are_documented() -> None:
    """The options an issue found in ``--help`` only, and every ``--json``."""
    docs = README + STATS_DOC
    for command, option in (
        ("runs", "--json"),
        ("show", "--json"),
        ("plugins", "--json"),
        ("reject", "--off"),
        ("fav", "--off"),
        ("stats", "--limit"),
        ("export", "--filter"),
        ("rm", "--purge"),
        ("rm", "--restore"),
        ("archive", "--off"),
    ):
        assert any(f"sdp {command}" in block and option in block for block in re.split(r"\n\n", docs)), (
            f"`sdp {command} {option}` is not documented"
        )
    for name, sub in subcommands().items():
        for action in sub._actions:
            if "--json" in action.option_strings:
                assert action.help, f"sdp {name} --json has no help text"


def test_the_sampler_option_names_every_builtin_sampler() -> None:
    for name in ("run", "sample"):
        sub = subcommands()[name]
        (action,) = [a for a in sub._actions if "--sampler" in a.option_strings]
        for sampler in plugins.samplers():
            assert sampler in (action.help or ""), f"sdp {name} --sampler's help does not name {sampler}"


def test_the_stats_json_key_list_matches_the_output() -> None:
    row = ValueStats("light", "slot", 0, "golden", 3, 1, 0, 0.3, 0.1, 0.6, 1.2, 0.5, 0.5, False)
    report = StatsReport("portrait", 10, 3, 0, 0.3, (row,)).to_dict()
    sentence = STATS_DOC.split("`--json` prints one object:", 1)[1].split("\n\n", 1)[0]
    top, _, per_value = sentence.partition("`values`, each with")
    documented_top = set(re.findall(r"`(\w+)`", top)) | {"values"}
    documented_values = set(re.findall(r"`(\w+)`", per_value)) - set(KINDS)
    assert documented_top == set(report), "docs/stats-refine.md: the --json keys"
    assert documented_values == set(report["values"][0]), "docs/stats-refine.md: the keys of each value"


def _runs_in_order() -> list[tuple[str, list[str], str]]:
    """Each ``sdp run`` of the README's code blocks, in order: (experiment name, its
    arguments, the output the README shows after it)."""
    found = []
    for block in re.findall(r"```(?:console)?\n(.*?)```", README, re.S):
        lines = block.splitlines()
        for k, line in enumerate(lines):
            command = line.removeprefix("$ ").split("#", 1)[0].strip()
            if not command.startswith("sdp run "):
                continue
            args = shlex.split(command)[2:]
            output = []
            for after in lines[k + 1 :]:
                if after.startswith(("$ ", "sdp ")):
                    break
                output.append(after)
            name = args[args.index("--name") + 1] if "--name" in args else Path(args[0]).stem
            found.append((name, args, "\n".join(output)))
    return found


def test_the_readme_runs_in_order_meet_no_refusal_it_does_not_show() -> None:
    """Runs of one name must be the same run (resuming); a different run under a used name
    is refused, and then the README must show that refusal."""
    seen: dict[str, list[str]] = {}
    runs = _runs_in_order()
    assert len(runs) >= 5
    for name, args, output in runs:
        options = [a for a in args if a != "--name" and a != name]
        if name in seen and seen[name] != options:
            assert "already exists and differs" in output, f"README: `sdp run {' '.join(args)}` is refused"
            continue
        seen.setdefault(name, options)
    names = {name for name, _args, _out in runs if "golden-glasses.sdp" in " ".join(_args)}
    assert {"golden-glasses-tiny", "golden-glasses", "golden-glasses-sd21"} <= names
