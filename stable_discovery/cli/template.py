"""Template commands: ``sdp check``, ``count``, ``expand``, ``sample``, ``convert``.

They import neither torch nor numpy, so they start fast."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from stable_discovery.cli.args import (
    SAMPLER_HELP,
    add_template_args,
    emit,
    load_template,
    nonneg,
    plural,
    template_sampler,
)
from stable_discovery.errors import UsageError

__all__ = ["add_commands"]


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery.cli.models import check_loras, lora_dirs, model_lines, run_models

    program = load_template(args)
    sampler = template_sampler(program).name
    check_loras(program, lora_dirs(args), run_models(program))
    for warning in program.warnings:
        sys.stderr.write(warning.format() + "\n")
    name = program.source.name
    out.write(f"{name}: ok\n")
    if program.is_bare:
        out.write("a single template (no slot definitions)\n")
    else:
        width = max((len(n) for n in program.slots), default=0) + 2
        out.write("slots:\n")
        for slot_name, info in program.slots.items():
            note = "" if slot_name in program.used_slots else "  (unused)"
            shared = "  (used in several places)" if slot_name in program.shared_slots else ""
            out.write(
                f"  <{slot_name}>".ljust(width + 4)
                + plural(len(info.alternatives), "alternative")
                + note
                + shared
                + "\n"
            )
    if program.settings:
        out.write("settings:\n")
        width = max(len(n) for n in program.settings) + 2
        for set_name, sinfo in program.settings.items():
            values = " | ".join(sinfo.texts)
            note = "  (sampled)" if sinfo.sampled else ""
            out.write(f"  @{set_name}".ljust(width + 4) + values + note + "\n")
    if "model" in program.settings:
        out.write("models:\n")
        for line in model_lines(run_models(program)):
            out.write(line + "\n")
    _write_variables(program, out)
    out.write(f"sampler: {sampler}\n")
    if program.setting("count") is not None:
        out.write(f"count: {program.setting('count'):,}\n")
    out.write(f"combinations: {program.count():,}\n")
    if args.verbose:
        _write_notes(program, out)
    return 0


def _write_notes(program: Any, out: TextIO) -> None:
    """``--verbose``: the wildcard files read, and the lines read as data that a template
    would read differently."""
    files = program.wildcard_files
    out.write(
        f"wildcard files read: {len(files):,}" + (" (as data)" if program.wildcards_literal else "") + "\n"
    )
    for path in files:
        out.write(f"  {path}\n")
    notes = program.notes
    if not notes:
        if program.wildcards_literal:
            out.write("lines read as data that a template would read differently: none\n")
        return
    out.write(f"lines read as data that a template would read differently: {len(notes):,}\n")
    for note in notes:
        out.write(f"  {note.path}:{note.line}: {note.text}  ({note.reason})\n")


_SHOWN_VALUES = 72  # characters of values shown per traced variable


def _values_text(var: Any) -> str:
    """What a traced variable can be, in a few words: its values, a count, or its lines."""
    if var.kind == "item":
        return "present or absent"
    if var.kind == "count":
        return "number of items picked"
    if var.kind == "wildcard" or (var.lines and var.kind == "choice"):
        return plural(len(var.values), "line")
    if var.kind == "file":
        shown = " | ".join(var.values)
    else:
        shown = " | ".join(v if v else '""' for v in var.values)
    if len(shown) > _SHOWN_VALUES:
        shown = shown[: _SHOWN_VALUES - 1] + "…"
    count = plural(len(var.values), "value")
    if var.kind == "optional":
        count += " or absent"
    return f"{count}: {shown}"


def _write_variables(program: Any, out: TextIO) -> None:
    """The traced variables: every decision a sample records, with its name."""
    variables = program.variables
    if not variables:
        out.write("traced: nothing (every sample is the same prompt)\n")
        return
    out.write("traced (name, kind, values):\n")
    labels = [("@" if v.kind == "setting" else "") + v.name for v in variables]
    width = min(max(len(label) for label in labels), 40) + 2
    kinds = max(len(v.kind) for v in variables) + 2
    for label, var in zip(labels, variables, strict=True):
        # a name longer than the column still keeps two spaces before its kind
        out.write(f"  {label.ljust(width - 2)}  {var.kind.ljust(kinds)}{_values_text(var)}\n")
    if any(_automatic(v) for v in variables):
        out.write(
            "  ({N} and [N] in a name count the choices and optional parts where it stands;\n"
            "  name one to keep its name as you edit the template: {#name: a|b}, [#name: x])\n"
        )


def _automatic(var: Any) -> bool:
    return var.kind in ("choice", "optional", "item", "count") and (
        var.name.endswith(("}", "]")) or (var.group or "").endswith(("}", "]"))
    )


def cmd_count(args: argparse.Namespace, out: TextIO) -> int:
    program = load_template(args)
    out.write(f"{program.count()}\n")
    return 0


def cmd_expand(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery.plugins import get_sampler

    program = load_template(args)
    sampler = get_sampler("combinatorial")
    seed = program.setting("seed", 0)
    stop = program.count() if args.limit is None else min(args.limit, program.count())
    emit(sampler.samples(program, 0, stop, seed), args.jsonl, out)
    return 0


def cmd_sample(args: argparse.Namespace, out: TextIO) -> int:
    program = load_template(args)
    sampler = template_sampler(program, args.sampler)
    seed = args.seed if args.seed is not None else program.setting("seed", 0)
    if args.index is not None:
        if args.index < 0:
            raise UsageError("--index must be 0 or more")
        size = sampler.size(program)
        if size is not None and args.index >= size:
            raise UsageError(f"--index {args.index} is past the last sample ({size - 1})")
        emit([sampler.sample(program, args.index, seed)], args.jsonl, out)
        return 0
    n = args.n if args.n is not None else program.setting("count")
    if n is None:
        size = sampler.size(program)
        if size is None:
            raise UsageError("how many samples? give -n N (or @count in the template)")
        n = size
    if n < 0:
        raise UsageError("-n must be 0 or more")
    size = sampler.size(program)
    if size is not None and n > size:
        asked = f"-n {n}" if args.n is not None else f"@count = {n}"
        sys.stderr.write(
            f"note: {asked} is more than the {size:,} prompts the {sampler.name} sampler makes "
            "(each once): all of them follow (--sampler random draws with repetition)\n"
        )
        n = size
    emit(sampler.samples(program, 0, n, seed), args.jsonl, out)
    return 0


def cmd_convert(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery.errors import Source
    from stable_discovery.language.wildcards import read_text_file

    if args.file is None:
        raise UsageError(
            "give the file to convert: a JSON generator config, or with --from dynamicprompts a "
            "dynamicprompts template"
        )
    if args.source == "dynamicprompts":
        sdp_text = _from_dynamicprompts(Source(str(args.file), read_text_file(args.file)))
    else:
        sdp_text = _from_json_config(Source(str(args.file), read_text_file(args.file, "config")))
    if args.output is not None:
        if args.output.exists() and not args.force:
            raise UsageError(f"{args.output} exists; pass --force to replace it")
        args.output.write_text(sdp_text, encoding="utf-8")
        sys.stderr.write(f"wrote {args.output}\n")
    else:
        out.write(sdp_text)
    return 0


def _from_json_config(source: Any) -> str:
    """The converted template of one of the original tool's JSON configs; a file of
    another kind is refused with what ``sdp convert`` reads."""
    from stable_discovery.errors import TemplateError
    from stable_discovery.language.legacy_config import legacy_source

    hint = (
        "sdp convert reads the original tool's JSON generator configs; a dynamicprompts "
        "template converts with --from dynamicprompts, and a .sdp template needs no converting"
    )
    if not source.text.lstrip("\ufeff \t\r\n").startswith("{"):
        raise TemplateError("not a JSON generator config (a JSON object)", source, 0, hint=hint)
    try:
        return legacy_source(source)[0]
    except TemplateError as exc:
        if exc.message.startswith("not valid JSON") and exc.hint is None:
            raise TemplateError(exc.message, source, exc.offset, hint=hint) from None
        raise


def _from_dynamicprompts(source: Any) -> str:
    """The converted template, checked to read as meant (warnings on stderr)."""
    from stable_discovery.errors import Source
    from stable_discovery.language.definitions import definitions_of, settings_specs
    from stable_discovery.language.from_peer import from_dynamicprompts
    from stable_discovery.language.parser import parse

    sdp_text, warnings = from_dynamicprompts(source)
    for warning in warnings:
        sys.stderr.write(warning.format() + "\n")
    converted = Source(source.name + " (converted)", sdp_text)
    definitions_of(converted, parse(converted), settings_specs(()))  # a mistake here is the converter's
    return sdp_text


def add_commands(sub: Any) -> None:
    """Add the template commands to the ``sdp`` parser."""
    from stable_discovery.cli.models import add_lora_arg

    p = sub.add_parser("check", help="validate a template and summarize it (and say each @model's family)")
    add_template_args(p)
    add_lora_arg(p)
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also list the wildcard files read and, for files read as data, each line a "
        "template would read differently",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("count", help="print the exact number of combinations")
    add_template_args(p)
    p.set_defaults(func=cmd_count)

    p = sub.add_parser("expand", help="print every combination, in odometer order")
    add_template_args(p)
    p.add_argument("--limit", type=nonneg, metavar="N", help="stop after N prompts")
    p.add_argument("--jsonl", action="store_true", help="one JSON record per line")
    p.set_defaults(func=cmd_expand)

    p = sub.add_parser("sample", help="print N samples")
    add_template_args(p)
    p.add_argument("-n", type=nonneg, metavar="N", help="number of samples (default: @count)")
    p.add_argument("--seed", type=int, help="sampler seed (default: @seed, else 0)")
    p.add_argument("--sampler", metavar="NAME", help=SAMPLER_HELP)
    p.add_argument("--index", type=int, metavar="I", help="print sample I alone")
    p.add_argument("--jsonl", action="store_true", help="one JSON record per line")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "convert",
        help="convert an original stable-discovery JSON config, or a dynamicprompts template, to .sdp",
    )
    p.add_argument(
        "file", nargs="?", type=Path, help="the JSON generator config (or dynamicprompts template)"
    )
    p.add_argument(
        "--from",
        dest="source",
        choices=("config", "dynamicprompts"),
        default="config",
        help="what FILE is: an original JSON generator config (default), or a dynamicprompts "
        "template (its A1111 brackets escaped, ${x=!…} variables as slots, comments left out, "
        "its wildcard files read as data: @wildcard_lines = literal)",
    )
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_convert)
