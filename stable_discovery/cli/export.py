"""``sdp export``: an experiment's images with their metadata, or its records, out of the
workspace: a folder, a zip, a CSV or a JSON Lines file (the writers are in
:mod:`stable_discovery.store.export`)."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from stable_discovery.cli.args import add_workspace_arg, plural
from stable_discovery.errors import UsageError

__all__ = ["add_commands", "cmd_export", "resolve_filters"]

_FILE_KINDS = {".zip": "zip", ".csv": "csv", ".jsonl": "jsonl"}


def _stars(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"stars go from 1 to 5, not {text!r}") from None
    if not 1 <= value <= 5:
        raise argparse.ArgumentTypeError(f"stars go from 1 to 5, not {value}")
    return value


def output_kind(output: str) -> str:
    """``zip``, ``csv``, ``jsonl`` (by the file's suffix; ``-``: JSON Lines on stdout) or
    ``folder`` (a name without a suffix, or a folder that exists). Any other suffix is
    refused: ``-o out.json`` meant a file, not a folder named ``out.json``."""
    if output == "-":
        return "jsonl"
    path = Path(output)
    kind = _FILE_KINDS.get(path.suffix.lower())
    if kind is not None:
        return kind
    if path.suffix and not path.is_dir():
        raise UsageError(
            f"-o {output}: sdp export writes a folder, FILE.zip, FILE.csv or FILE.jsonl, not "
            f"{path.suffix} (for a folder with that name, create it first)"
        )
    return "folder"


def _choice_of(facet: dict[str, Any], value: str) -> list[int]:
    """The choices of a facet a ``--filter`` value names: its text (exactly, else
    ignoring case), ``#N`` (the alternative's number) or ``(absent)``."""
    from stable_discovery.store.filters import ABSENT

    values = facet["values"]
    if value == "(absent)":
        if any(v.get("absent") for v in values):
            return [ABSENT]
        raise UsageError(f"{_label(facet)} is never absent: every image has one of its values")
    if value.startswith("#") and value[1:].isdigit() and any(v["choice"] == int(value[1:]) for v in values):
        return [int(value[1:])]
    for same in (lambda t: t == value, lambda t: t.lower() == value.lower()):
        found = [v["choice"] for v in values if not v.get("absent") and same(v["text"])]
        if found:
            return found
    texts = [v["text"] for v in values if not v.get("absent")]
    inside = [t for t in texts if value.lower() in t.lower()]
    close = inside if len(inside) == 1 else difflib.get_close_matches(value, texts, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(repr(t) for t in texts[:20]) + (", …" if len(texts) > 20 else "")
    raise UsageError(f"{_label(facet)} has no value {value!r}.{hint} Its values: {shown}")


def _label(facet: dict[str, Any]) -> str:
    return ("@" if facet["kind"] == "setting" else "") + str(facet["name"])


def resolve_filters(
    facets: list[dict[str, Any]], specs: list[str]
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``--filter SLOT=VALUE`` options as value filters (several values of one slot:
    any of them; several slots: all)."""
    by_name = {f["name"]: f for f in facets}
    chosen: dict[str, set[int]] = {}
    for spec in specs:
        slot, sep, value = spec.partition("=")
        name = slot.strip().removeprefix("@")
        if not sep or not name:
            raise UsageError(f"--filter takes SLOT=VALUE (e.g. --filter style='art deco'), not {spec!r}")
        facet = by_name.get(name)
        if facet is None:
            known = ", ".join(_label(f) for f in facets) or "none: the experiment traces no choice"
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"--filter {spec!r}: no traced slot or setting {name!r}.{hint} Known: {known}")
        chosen.setdefault(name, set()).update(_choice_of(facet, value.strip()))
    return tuple((name, tuple(sorted(choices))) for name, choices in chosen.items())


def _filters(store: Any, exp: Any, args: argparse.Namespace) -> Any:
    from stable_discovery.analysis.stats import setting_names
    from stable_discovery.store import gallery_queries
    from stable_discovery.store.filters import Filters

    values: tuple[tuple[str, tuple[int, ...]], ...] = ()
    if args.filter:
        facets = gallery_queries.facets(store.db, exp.id, setting_names(exp.template_text))
        values = resolve_filters(facets, args.filter)
    return Filters(
        favourite=True if args.favourites else None,
        rejected=None if args.include_rejected else False,
        stars=str(args.min_stars) if args.min_stars else None,
        values=values,
        words=tuple(args.search.split()) if args.search else (),
    )


def _check_output(output: str, kind: str, force: bool) -> None:
    """Refuse to overwrite what is there, unless ``--force``."""
    if output == "-" or force:
        return
    path = Path(output)
    if kind == "folder":
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(f"{path} exists and is not an empty folder; pass --force to write into it")
    elif path.exists():
        raise UsageError(f"{path} exists; pass --force to replace it")


def _write(
    records: Any, output: str, kind: str, force: bool, columns: tuple[list[str], list[str]], out: TextIO
) -> Any:
    from stable_discovery.store import export

    if kind == "folder":
        return export.write_folder(records, Path(output), overwrite=force)
    if output == "-":
        return export.ExportResult(records=export.write_jsonl(records, out))
    path = Path(output)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if kind == "zip":
            with open(tmp, "wb") as raw:
                result = export.write_zip(records, raw)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as text:
                n = (
                    export.write_csv(records, text, *columns)
                    if kind == "csv"
                    else export.write_jsonl(records, text)
                )
            result = export.ExportResult(records=n)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return result


def _what(args: argparse.Namespace) -> str:
    parts = []
    if args.favourites:
        parts.append("favourites")
    if args.min_stars:
        parts.append(f"{args.min_stars}+ stars")
    parts += list(args.filter or [])
    if args.search:
        parts.append(f"prompt has {args.search!r}")
    return "; ".join(parts) or "every image"


def cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery.store import export
    from stable_discovery.store.database import Store, workspace_path
    from stable_discovery.store.gallery_queries import matching_indices

    kind = output_kind(args.output)
    with Store(workspace_path(args.workspace), mode="read") as store:
        exp = store.require(args.name)
        filters = _filters(store, exp, args)
        _check_output(args.output, kind, args.force)
        folder = store.experiment_dir(exp.name).resolve()
        records = export.export_records(store.db, exp.id, exp.name, folder, filters)
        try:
            columns = export.record_columns(store.db, exp.id)
            result = _write(records, args.output, kind, args.force, columns, out)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        left_out = 0
        if not args.include_rejected:
            everything = type(filters)(filters.favourite, None, filters.stars, filters.values, filters.words)
            left_out = sum(1 for _ in matching_indices(store.db, exp.id, everything)) - result.records
    noun = "image" if kind in ("zip", "folder") else "record"
    done = result.images if kind in ("zip", "folder") else result.records
    note = (
        f"; {plural(left_out, 'rejected image')} left out (--include-rejected keeps them)" if left_out else ""
    )
    where = "stdout" if args.output == "-" else args.output
    sys.stderr.write(f"exported {plural(done, noun)} of {exp.name} ({_what(args)}) to {where}{note}\n")
    if result.missing:
        shown = ", ".join(result.missing[:5]) + (", …" if len(result.missing) > 5 else "")
        sys.stderr.write(
            f"error: {plural(len(result.missing), 'image')} of the selection are missing from "
            f"{store.experiment_dir(exp.name)} ({shown}): left out of the export\n"
        )
        return 1
    return 0


def add_commands(sub: Any) -> None:
    """Add ``sdp export`` to the ``sdp`` parser."""
    p = sub.add_parser(
        "export",
        help="copy an experiment's images with their metadata, or its records, out of the workspace",
        description="Export the images of an experiment that a selection picks (default: every one "
        "that is not rejected). -o DIR copies the PNGs (their metadata chunks kept) with "
        "metadata.jsonl, a Hugging Face imagefolder; -o FILE.zip the same as a zip; -o FILE.csv "
        "or -o FILE.jsonl writes the records only (prompt, negative, seed, settings, trace, "
        "marks, image path); -o - prints JSON Lines.",
    )
    p.add_argument("name", help="experiment name")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR|FILE.zip|FILE.csv|FILE.jsonl",
        help="where to write; the kind follows the suffix (a name without one is a folder)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--favourites", action="store_true", help="only favourites")
    which.add_argument("--min-stars", type=_stars, metavar="N", help="only images rated N stars or more")
    p.add_argument(
        "--filter",
        action="append",
        metavar="SLOT=VALUE",
        help="only images whose SLOT (or @setting) took VALUE (its text, #N, or (absent)); "
        "repeatable: values of one slot are alternatives, different slots must all match",
    )
    p.add_argument("--search", metavar="WORDS", help="only images whose prompt has all these words")
    p.add_argument(
        "--include-rejected", action="store_true", help="keep rejected images (left out by default)"
    )
    p.add_argument(
        "--force", action="store_true", help="replace an existing file, or write into a non-empty folder"
    )
    add_workspace_arg(p)
    p.set_defaults(func=cmd_export)
