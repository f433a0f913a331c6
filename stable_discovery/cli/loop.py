"""``sdp stats`` and ``sdp refine``: what the favourites say, and the next template.

``add_commands(sub)`` adds both to the ``sdp`` parser (called from
:func:`stable_discovery.cli.main.build_parser`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from stable_discovery.errors import UsageError

__all__ = ["add_commands", "cmd_stats", "cmd_refine", "format_table"]


def _winner_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-stars",
        type=int,
        metavar="N",
        help="also count images rated N stars or more as winners (default: favourites only)",
    )
    p.add_argument(
        "--include-rejected",
        action="store_true",
        help="count rejected images as images that are not favourites (default: leave them out)",
    )


def _open_store(args: argparse.Namespace) -> Any:
    """The store, read-only: statistics and refining work on a read-only or full disk."""
    from stable_discovery.store.database import Store, workspace_path

    return Store(workspace_path(args.workspace), mode="read")


def _float_arg(lo: float) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value >= lo or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number of at least {lo:g}, got {text}")
        return value

    return parse


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _value_text(v: Any) -> str:
    """A row's value as the table shows it: an item is present or absent."""
    if v.absent:
        return str(v.text)
    if v.kind == "item":
        return "(present)"
    return str(v.text) if v.text else '""'


def format_table(report: Any, limit: int | None = None, width: int = 44) -> str:
    """The ``sdp stats`` table of a :class:`~stable_discovery.analysis.stats.StatsReport`."""
    r = report
    rejected = ""
    if r.rejected:
        rejected = (
            f", {r.rejected:,} rejected counted as non-favourites"
            if r.include_rejected
            else f", {r.rejected:,} rejected left out"
        )
    winners = "favourites" if r.min_stars is None else f"winners (favourite or {r.min_stars}+ stars)"
    lines = [
        f"{r.experiment}: {r.images:,} images{rejected}; {r.favourites:,} {winners}; "
        f"base rate {_pct(r.base_rate)}"
    ]
    if len(r.experiments) > 1:
        lines.append(
            "pooled: each value is compared, experiment by experiment, with the images of the "
            "experiments that have its variable; LIFT = favourites / those expected there"
        )
    if not r.values:
        lines.append("nothing traced to compare: every sample of the template is the same prompt")
        return "\n".join(lines) + "\n"
    header = ("VARIABLE", "VALUE", "IMAGES", "FAVS", "RATE", "95% INTERVAL", "LIFT", "SIG")
    rows = [header]
    shown = r.values if limit is None else r.values[:limit]
    for v in shown:
        name = ("@" + v.name) if v.kind == "setting" else v.name
        rows.append(
            (
                _cut(name, 32),
                _cut(_value_text(v), width),
                f"{v.images:,}",
                f"{v.favourites:,}",
                _pct(v.rate) if v.images else "-",
                f"{_pct(v.low)}–{_pct(v.high)}" if v.images else "-",
                f"{v.lift:.2f}x" if v.images else "-",
                "*" if v.significant else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {2, 3, 4, 6}
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join(cells).rstrip())
    if limit is not None and len(r.values) > limit:
        lines.append(f"… {len(r.values) - limit:,} more (--limit)")
    flagged = sum(1 for v in r.values if v.significant)
    test = (
        "one-sided test against the rest, experiment by experiment"
        if len(r.experiments) > 1
        else "one-sided Fisher exact test against the rest"
    )
    lines.append(
        f"* significant winner: {test}, "
        f"Benjamini-Hochberg q < 0.05 over {r.tested:,} values ({flagged:,} flagged)"
    )
    return "\n".join(lines) + "\n"


def cmd_stats(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery.analysis.stats import experiment_stats, plot

    with _open_store(args) as store:
        report = experiment_stats(
            store, list(args.names), include_rejected=args.include_rejected, min_stars=args.min_stars
        )
    if args.plot is not None:
        if args.plot.suffix.lower() != ".png":
            raise UsageError(f"--plot writes a PNG: give a file ending in .png, not {args.plot}")
        try:
            plot(report, args.plot)
        except OSError as exc:
            raise UsageError(f"cannot write {args.plot}: {exc.strerror or exc}") from None
        sys.stderr.write(f"wrote {args.plot}\n")
    if args.json:
        out.write(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        out.write(format_table(report, args.limit))
        if report.images and not report.favourites:
            sys.stderr.write(
                "no winners yet: every rate is 0%. Mark favourites first (the gallery's f, or "
                "sdp fav NAME INDEX…), or count stars with --min-stars N\n"
            )
    return 0


def _write_wildcards(output: Path, copies: dict[str, str], force: bool) -> None:
    """The refined template's weighted wildcard files, in a folder beside it; existing
    files are replaced only with --force."""
    paths = {output.parent / rel: text for rel, text in copies.items()}
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} exists; pass --force to replace the wildcard copies")
    for path, text in paths.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_refine(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery import plugins
    from stable_discovery.analysis.refine import refine_result, wildcard_folder

    if args.output is not None and args.output.exists() and not args.force:
        raise UsageError(f"{args.output} exists; pass --force to replace it")
    with _open_store(args) as store:
        result = refine_result(
            store,
            args.name,
            drop=args.drop,
            strength=args.strength,
            prior=args.prior,
            include_rejected=args.include_rejected,
            min_stars=args.min_stars,
            wildcards_to=wildcard_folder(args.output) if args.output is not None else None,
            wildcard_dirs=tuple(args.wildcards or ()),
            extra_settings=plugins.setting_specs(),
            wildcards_literal=args.wildcards_literal,
        )
    learned = result.learned
    summary = (
        f"weights from {learned.favourites:,} favourites among {learned.images:,} images of "
        f"{learned.experiment}"
    )
    if result.rewritten:
        summary += "; re-weighted " + ", ".join(result.rewritten)
    if result.dropped:
        summary += "; dropped " + "; ".join(f"{n}: {v}" for n, v in result.dropped)
    if args.output is not None:
        _write_wildcards(args.output, result.wildcards, args.force)
        try:
            args.output.write_text(result.text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        sys.stderr.write(f"wrote {args.output}: {summary}\n")
        if result.wildcards:
            folder = args.output.parent / wildcard_folder(args.output)
            sys.stderr.write(f"wrote {len(result.wildcards)} weighted wildcard files in {folder}/\n")
    else:
        out.write(result.text)
        sys.stderr.write(summary + "\n")
    if result.sampler_note:
        sys.stderr.write(result.sampler_note + "\n")
    if result.wildcard_note:
        sys.stderr.write(result.wildcard_note + "\n")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``stats`` and ``refine`` to the ``sdp`` subcommands."""
    _add_stats(sub)
    _add_refine(sub)


def _add_stats(sub: Any) -> None:
    from stable_discovery.cli.args import add_workspace_arg as _workspace_arg
    from stable_discovery.cli.args import nonneg as _nonneg_int

    p = sub.add_parser(
        "stats",
        help="which values of the template produce favourites: rates, intervals, significance",
        description="For every value of every traced variable of an experiment (slots, sampled "
        "settings, inline choices, optional parts present or absent, multi-select items, "
        "wildcard lines): images, favourites, favourite rate with a 95%% Wilson interval, lift "
        "over the base rate, and a significance flag (one-sided Fisher exact test against the "
        "rest, Benjamini-Hochberg at q = 0.05). Ranked by the interval's lower bound. Rejected "
        "images are left out. Several experiments of one lineage (a refined template's and its "
        "parent's) are pooled where their variables share names.",
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="experiment name (several: pooled)")
    p.add_argument("--json", action="store_true", help="the statistics as one JSON object")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw rates and intervals into a PNG")
    p.add_argument("--limit", type=_nonneg_int, metavar="N", help="show the first N rows of the table")
    _winner_args(p)
    _workspace_arg(p)
    p.set_defaults(func=cmd_stats)


def _add_refine(sub: Any) -> None:
    from stable_discovery.cli.args import add_workspace_arg as _workspace_arg

    p = sub.add_parser(
        "refine",
        help="write the next template, weighted by what the favourites say",
        description="Writes the experiment's template with every traced variable re-weighted "
        "from the favourites (shrunk estimates) where it is written: slots, sampled settings, "
        "inline choices, optional parts, multi-select items, and wildcard lines (in weighted "
        "copies of the wildcard files, in NEXT-wildcards/ beside NEXT.sdp); optionally without "
        "the values that clearly lose; with a header comment saying where the weights came from.",
    )
    p.add_argument("name", help="experiment name")
    p.add_argument("-o", "--output", type=Path, metavar="NEXT.sdp", help="write here instead of stdout")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--drop",
        action="store_true",
        help="remove values whose whole 95%% interval is below the base rate (never all of a slot's)",
    )
    p.add_argument(
        "--strength",
        type=_float_arg(0.0),
        default=1.0,
        metavar="S",
        help="weights follow (shrunk rate / base rate)^S; 0 keeps them, 2 is greedier (default 1)",
    )
    p.add_argument(
        "--prior",
        type=_float_arg(0.0),
        default=2.0,
        metavar="M",
        help="the shrinkage prior's worth in favourites (default 2; at least 10 images)",
    )
    from stable_discovery.cli.args import wildcard_folder

    p.add_argument(
        "--wildcards",
        metavar="DIR",
        action="append",
        type=wildcard_folder,
        help="the wildcard folders the experiment used (default: wildcards/ beside its template)",
    )
    p.add_argument(
        "--wildcards-literal",
        action="store_true",
        help="its wildcard files were read as data (as the experiment's sdp run --wildcards-literal)",
    )
    _winner_args(p)
    _workspace_arg(p)
    p.set_defaults(func=cmd_refine)
