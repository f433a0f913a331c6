"""The ``sdp`` command line.

Template commands (check, count, expand, sample, convert) import neither torch nor
numpy up front, so they start fast. Errors go to stderr: exit status 2 for bad input,
1 for failures at run time; machine-readable output goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, TextIO

from . import __version__
from .errors import SdpError, UsageError

__all__ = ["main", "build_parser"]


# ---------------------------------------------------------------------------------------
# shared options


def _add_template_args(p: argparse.ArgumentParser, allow_text: bool = True) -> None:
    p.add_argument("file", nargs="?", type=Path, help="a .sdp template or an original JSON config")
    if allow_text:
        p.add_argument("-e", "--expr", metavar="TEMPLATE", help="template text instead of a file")
    p.add_argument(
        "--wildcards",
        metavar="DIR",
        action="append",
        type=Path,
        help="a wildcard folder (repeatable; default: wildcards/ beside the template)",
    )


def _load(args: argparse.Namespace) -> Any:
    from .program import load, loads

    text = getattr(args, "expr", None)
    if text is not None and args.file is not None:
        raise UsageError("give a template file or -e TEXT, not both")
    if text is not None:
        return loads(text, "<-e>", args.wildcards or ())
    if args.file is None:
        raise UsageError("no template: give a file, or -e 'TEMPLATE TEXT'")
    return load(args.file, args.wildcards)


def _emit(samples: Iterable[Any], jsonl: bool, out: TextIO) -> None:
    write = out.write
    if jsonl:
        dumps = json.dumps
        for s in samples:
            write(dumps(s.to_dict(), ensure_ascii=False) + "\n")
    else:
        for s in samples:
            write(s.prompt + "\n")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------------------------
# commands


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    program = _load(args)
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
                + _plural(len(info.alternatives), "alternative")
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
    sampler = program.setting("sampler", "random")
    out.write(f"sampler: {sampler}\n")
    if program.setting("count") is not None:
        out.write(f"count: {program.setting('count'):,}\n")
    out.write(f"combinations: {program.count():,}\n")
    return 0


def cmd_count(args: argparse.Namespace, out: TextIO) -> int:
    program = _load(args)
    out.write(f"{program.count()}\n")
    return 0


def cmd_expand(args: argparse.Namespace, out: TextIO) -> int:
    from .samplers import get_sampler

    program = _load(args)
    sampler = get_sampler("combinatorial")
    seed = program.setting("seed", 0)
    stop = program.count() if args.limit is None else min(args.limit, program.count())
    _emit(sampler.samples(program, 0, stop, seed), args.jsonl, out)
    return 0


def cmd_sample(args: argparse.Namespace, out: TextIO) -> int:
    from .samplers import get_sampler

    program = _load(args)
    name = args.sampler or program.setting("sampler", "random")
    sampler = get_sampler(name)
    seed = args.seed if args.seed is not None else program.setting("seed", 0)
    if args.index is not None:
        if args.index < 0:
            raise UsageError("--index must be 0 or more")
        size = sampler.size(program)
        if size is not None and args.index >= size:
            raise UsageError(f"--index {args.index} is past the last sample ({size - 1})")
        _emit([sampler.sample(program, args.index, seed)], args.jsonl, out)
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
    if size is not None:
        n = min(n, size)
    _emit(sampler.samples(program, 0, n, seed), args.jsonl, out)
    return 0


def cmd_convert(args: argparse.Namespace, out: TextIO) -> int:
    from .errors import Source
    from .legacy import legacy_source
    from .wildcards import read_text_file

    if args.file is None:
        raise UsageError("give the JSON generator config to convert")
    text = read_text_file(args.file, "config")
    sdp_text, _ = legacy_source(Source(str(args.file), text))
    if args.output is not None:
        if args.output.exists() and not args.force:
            raise UsageError(f"{args.output} exists; pass --force to replace it")
        args.output.write_text(sdp_text, encoding="utf-8")
        sys.stderr.write(f"wrote {args.output}\n")
    else:
        out.write(sdp_text)
    return 0


# ---------------------------------------------------------------------------------------


def _nonneg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdp",
        description="stable-discovery: sample prompts from .sdp templates, generate images "
        "at scale, screen favourites and learn what works.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check", help="validate a template and summarize it")
    _add_template_args(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("count", help="print the exact number of combinations")
    _add_template_args(p)
    p.set_defaults(func=cmd_count)

    p = sub.add_parser("expand", help="print every combination, in odometer order")
    _add_template_args(p)
    p.add_argument("--limit", type=_nonneg, metavar="N", help="stop after N prompts")
    p.add_argument("--jsonl", action="store_true", help="one JSON record per line")
    p.set_defaults(func=cmd_expand)

    p = sub.add_parser("sample", help="print N samples")
    _add_template_args(p)
    p.add_argument("-n", type=_nonneg, metavar="N", help="number of samples (default: @count)")
    p.add_argument("--seed", type=int, help="sampler seed (default: @seed, else 0)")
    p.add_argument("--sampler", help="random | combinatorial | shuffle | legacy (default: @sampler)")
    p.add_argument("--index", type=int, metavar="I", help="print sample I alone")
    p.add_argument("--jsonl", action="store_true", help="one JSON record per line")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("convert", help="convert an original stable-discovery JSON config to .sdp")
    p.add_argument("file", nargs="?", type=Path, help="the JSON generator config")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    out = sys.stdout
    try:
        return int(args.func(args, out) or 0)
    except SdpError as exc:
        out.flush()
        sys.stderr.write(exc.format() + "\n")
        return exc.exit_code
    except BrokenPipeError:
        # the reader went away (sdp expand big.sdp | head): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except RecursionError:
        sys.stderr.write("error: the template nests too deeply to evaluate\n")
        return 2
    except MemoryError:
        sys.stderr.write("error: out of memory\n")
        return 1


def entry_point() -> None:  # pragma: no cover - console script wrapper
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
