"""The ``sdp`` command line: the parser (each group of commands adds its own) and the
error handling every command shares. Errors go to stderr: exit status 2 for bad input,
1 for failures at run time; machine-readable output goes to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from stable_discovery import __version__
from stable_discovery.cli import experiments, export, gallery, loop, manage, plugin_list, run, template
from stable_discovery.errors import SdpError

__all__ = ["main", "build_parser", "entry_point"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdp",
        description="stable-discovery: sample prompts from .sdp templates, generate images "
        "at scale, screen favourites and learn what works.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (template, run, experiments, manage, export, plugin_list, loop, gallery):
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # counts can have any number of digits
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
    except Exception as exc:  # a fault of the machine, or a bug: say so briefly
        fault = _fault(args, exc)
        if fault is not None:
            out.flush()
            sys.stderr.write(f"error: {fault}\n")
            return 1
        if os.environ.get("SDP_DEBUG"):
            raise
        sys.stderr.write(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "this is a bug in stable-discovery; rerun with SDP_DEBUG=1 for the traceback "
            "and please report it\n"
        )
        return 70


def _fault(args: argparse.Namespace, exc: Exception) -> str | None:
    """The one line for a fault of the machine (a full disk, a read-only folder, a
    damaged database: not a bug), or None."""
    from stable_discovery.store.database import DB_FILE, workspace_path
    from stable_discovery.store.faults import describe

    where = None
    if hasattr(args, "workspace"):
        where = workspace_path(args.workspace) / DB_FILE
    return describe(exc, where)


def entry_point() -> None:  # pragma: no cover - console script wrapper
    from stable_discovery.cli.clock import mark_process_start

    mark_process_start()
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
