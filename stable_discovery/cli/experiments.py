"""The store's commands: ``sdp runs``, ``show``, ``fav``, ``rate``, ``reject``, ``repair``.

``runs`` and ``show`` open the store read-only (a read-only or full disk can still be
browsed); the marks open it for writing but never create it; ``repair`` rebuilds it."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, TextIO

from stable_discovery.cli.args import add_workspace_arg, backend_factory, nonneg, open_store, plural, stars
from stable_discovery.cli.models import add_lora_arg
from stable_discovery.errors import UsageError

__all__ = ["add_commands"]


def cmd_runs(args: argparse.Namespace, out: TextIO) -> int:
    if getattr(args, "name", None):
        return _runs_of(args, out)
    with open_store(args) as store:
        exps = store.experiments()
        missing = {e.name: store.scan(e).missing for e in exps}
        if args.json:
            for e in exps:
                out.write(json.dumps(_run_json(e, len(missing[e.name]))) + "\n")
            return 0
        if not exps:
            out.write(f"no experiments in {store.workspace}\n")
            return 0
        _runs_table(exps, missing, out)
        for e in exps:
            gone = missing[e.name]
            if gone:
                shown = ", ".join(gone[:3]) + (f" and {len(gone) - 3:,} more" if len(gone) > 3 else "")
                out.write(
                    f"{e.name}: {plural(len(gone), 'image')} missing ({shown}); "
                    f"`sdp repair {e.name} --regen` or resuming the run makes them again\n"
                )
    return 0


def _runs_of(args: argparse.Namespace, out: TextIO) -> int:
    """``sdp runs NAME``: each run of one experiment, with how it was run."""
    import time

    with open_store(args) as store:
        exp = store.require(args.name)
        runs = store.runs_of(exp)
    if args.json:
        for r in runs:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
        return 0
    if not runs:
        out.write(f"{exp.name}: no run recorded (runs are recorded since stable-discovery 0.3)\n")
        return 0
    rows = [("STARTED", "OUTCOME", "NEW", "IMG/S", "FIRST IMAGE", "HOW")]
    for r in runs:
        seconds = r["seconds"] or 0.0
        rows.append(
            (
                time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started_at"])),
                r["outcome"],
                str(r["generated"]),
                f"{r['generated'] / seconds:.2f}" if seconds > 0 else "-",
                f"{r['first_image_s']:.1f} s" if r["first_image_s"] is not None else "-",
                _how(r["settings"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() + "\n")
    return 0


def _how(settings: dict[str, Any]) -> str:
    """A run's settings in a few words: executor, batch, encoders, device, precision and
    the speed knobs that were on."""
    knobs = settings.get("knobs") or {}
    words = [str(settings.get("executor", "local")), f"batch {settings.get('batch')}"]
    fitted = settings.get("batch_sizes") or {}
    words += [f"{size} per call ({slot})" for slot, size in fitted.items()]
    words.append(f"encoders {settings.get('encoders')}")
    words += [str(v) for v in (knobs.get("gpu") or knobs.get("device"), knobs.get("dtype")) if v]
    if knobs.get("compile"):
        words.append(f"compile {knobs['compile']}" + (" + CUDA graphs" if knobs.get("cuda_graphs") else ""))
    words += [name.replace("_", "-") for name in ("channels_last", "fused_qkv") if knobs.get(name)]
    if knobs.get("sdpa") not in (None, "auto"):
        words.append(f"sdpa {knobs['sdpa']}")
    return ", ".join(words)


def _run_json(e: Any, missing: int) -> dict[str, Any]:
    return {
        "name": e.name,
        "template": e.template_path,
        "sampler": e.sampler,
        "seed": e.seed,
        "count": e.count,
        "done": e.done,
        "missing": missing,
        "backend": e.backend,
        "overrides": e.overrides,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "archived": e.archived,
    }


def _runs_table(exps: list[Any], missing: dict[str, Any], out: TextIO) -> None:
    """The table of ``sdp runs``: DONE counts the images in place, MISSING (shown when
    any is) those whose files are gone."""
    import time

    show_missing = any(missing.values())
    rows = [
        ("NAME", "TEMPLATE", "DONE", *(("MISSING",) if show_missing else ()), "SAMPLER", "BACKEND", "UPDATED")
    ]
    for e in exps:
        gone = len(missing[e.name])
        rows.append(
            (
                e.name + (" (archived)" if e.archived else ""),
                e.template_path or "-",
                f"{e.done - gone}/{e.count}",
                *((str(gone) if gone else "-",) if show_missing else ()),
                e.sampler,
                e.backend
                + (" " + " ".join(f"{k}={v}" for k, v in e.overrides.items()) if e.overrides else ""),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(e.updated_at)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() + "\n")


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    if args.save and not args.regen:
        raise UsageError(
            "--save writes a regenerated image: use it with --regen (sdp show NAME I --regen --save)"
        )
    with open_store(args) as store:
        exp = store.require(args.name)
        rec = store.record(exp, args.index)
        if rec is None:
            if not 0 <= args.index < exp.count:
                raise UsageError(f"{exp.name!r} has samples 0..{exp.count - 1}, not {args.index}")
            raise UsageError(f"sample {args.index} of {exp.name!r} is not generated yet")
        rec["path"] = str(store.experiment_dir(exp.name) / rec["file"])
        rec["backend"] = exp.backend
        if args.json:
            out.write(json.dumps(rec, ensure_ascii=False, indent=2) + "\n")
        else:
            out.write(f"experiment: {exp.name}\nindex: {rec['index']}\n")
            out.write(f"prompt: {rec['prompt']}\n")
            out.write(f"negative: {rec['negative']}\n")
            out.write("settings: " + ", ".join(f"{k}={v}" for k, v in rec["settings"].items()) + "\n")
            out.write(f"seed: {rec['seed']}\n")
            if exp.backend == "dummy":
                out.write("backend: dummy (test pictures: the model setting was not used)\n")
            out.write("trace:\n")
            for k, v in rec["trace"].items():
                out.write(f"  {k}: #{v['index']} {v['text']}\n")
            gone = "" if os.path.exists(rec["path"]) else "  (missing: --regen --save makes it again)"
            out.write(f"file: {rec['path']}{gone}\n")
            if rec["seconds"] is not None:
                out.write(f"time: {rec['seconds']:.3f} s (batch of {rec['batch_size']})\n")
        if args.regen:
            return _regen(args, store, exp, rec["path"], out)
    return 0


def _regen(args: argparse.Namespace, store: Any, exp: Any, path: str, out: TextIO) -> int:
    """``sdp show --regen [--save]``: make the image again, compare, and with ``--save``
    write it when the stored file is missing or differs."""
    from stable_discovery.run.runner import regenerate

    options = _regen_options(args, exp)
    _image, diff = regenerate(store, exp, args.index, backend_factory(exp.backend), options, save=args.save)
    if diff is None:
        if args.save:
            out.write(f"regenerated; the stored file was missing: saved {path}\n")
            return 0
        out.write("regenerated; the stored file is missing, nothing to compare (--save writes it)\n")
        return 1
    if diff == 0:
        out.write("regenerated: identical to the stored image\n")
        return 0
    if diff <= 1:
        out.write(f"regenerated: matches (max difference {diff}/255 per pixel)\n")
    else:
        out.write(f"regenerated: DIFFERS (max difference {diff}/255 per pixel)\n")
    if args.save:
        out.write(f"saved the regenerated image to {path}\n")
        return 0
    return 0 if diff <= 1 else 1


def cmd_fav(args: argparse.Namespace, out: TextIO) -> int:
    with open_store(args, "write") as store:
        exp = store.require(args.name)
        store.rate(exp, args.indices, favourite=not args.off)
    word = "unmarked" if args.off else "marked"
    out.write(f"{word} {plural(len(args.indices), 'favourite')} in {args.name}\n")
    return 0


def cmd_rate(args: argparse.Namespace, out: TextIO) -> int:
    stars = None if args.stars == 0 else args.stars
    with open_store(args, "write") as store:
        exp = store.require(args.name)
        store.rate(exp, [args.index], stars=stars)
    out.write(f"{args.name} #{args.index}: " + (f"{stars} stars\n" if stars else "rating cleared\n"))
    return 0


def cmd_reject(args: argparse.Namespace, out: TextIO) -> int:
    with open_store(args, "write") as store:
        exp = store.require(args.name)
        store.rate(exp, args.indices, rejected=not args.off)
    word = "restored" if args.off else "rejected"
    out.write(f"{word} {plural(len(args.indices), 'image')} in {args.name}\n")
    return 0


def cmd_repair(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery.run.repair import repair
    from stable_discovery.store.database import check_name, workspace_path

    for name in args.names:
        check_name(name)
    report = repair(workspace_path(args.workspace), args.names, backend_factory if args.regen else None)
    _print_repair(report, out)
    return 1 if any(r.missing for r in report.experiments) else 0


def _print_repair(report: Any, out: TextIO) -> None:
    db = report.workspace / "discovery.db"
    if report.store_state is not None:
        out.write(f"{db} was {report.store_state}; the store was rebuilt from the experiment folders\n")
    if report.set_aside is not None:
        out.write(f"the damaged database was kept as {report.set_aside}\n")
    if report.marks_restored:
        out.write(
            f"{plural(report.marks_restored, 'mark')} (favourites, stars, rejections) read back from it\n"
        )
    elif report.set_aside is not None:
        out.write("no favourites, stars or rejections could be read back from it\n")
    for r in report.experiments:
        words = _repair_words(r)
        out.write(f"{r.name}: " + ("; ".join(words) if words else "whole") + "\n")
    if not report.experiments:
        out.write(f"no experiments in {report.workspace}\n")


def _repair_words(r: Any) -> list[str]:
    def some(names: tuple[str, ...]) -> str:
        return ", ".join(names[:3]) + ("…" if len(names) > 3 else "")

    words = []
    if r.rebuilt == "spec":
        words.append("added back from its folder (spec and images): runs resume as before")
    elif r.rebuilt == "images":
        words.append(
            "added back from its images; its template was not kept with them, "
            "so run the template again under a new name to go on"
        )
    if r.adopted:
        words.append(f"{plural(r.adopted, 'image')} given their rows")
    if r.regenerated:
        words.append(f"{plural(r.regenerated, 'missing image')} made again")
    if r.missing:
        words.append(
            f"{plural(len(r.missing), 'image')} missing ({some(r.missing)}): "
            f"`sdp repair {r.name} --regen` makes them again"
        )
    if r.skipped:
        words.append(
            f"{plural(len(r.skipped), 'file')} left alone (not this experiment's: {some(r.skipped)})"
        )
    return words


def _regen_options(args: argparse.Namespace, exp: Any) -> dict[str, Any]:
    """The diffusers backend's LoRA folders for ``--regen``: ``--loras``, else ``loras/``
    beside the experiment's template (as ``sdp run`` looked)."""
    if exp.backend != "diffusers":
        return {}
    from stable_discovery.language.loras import default_lora_dirs

    template = Path(exp.template_path) if exp.template_path else None
    dirs = args.loras or default_lora_dirs(template)
    return {"lora_dirs": [str(Path(d).expanduser().absolute()) for d in dirs]}


def add_commands(sub: Any) -> None:
    """Add the store's commands to the ``sdp`` parser."""
    p = sub.add_parser(
        "runs", help="list experiments (archived ones marked), or the runs of one with how each was run"
    )
    p.add_argument("name", nargs="?", help="an experiment: list its runs (speed knobs, batch, first image)")
    add_workspace_arg(p)
    p.add_argument(
        "--json", action="store_true", help="one JSON object per line, one per experiment (or run)"
    )
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="print one sample's full record")
    p.add_argument("name", help="experiment name")
    p.add_argument("index", type=nonneg, help="sample index")
    p.add_argument("--regen", action="store_true", help="generate the image again and compare")
    p.add_argument(
        "--save",
        action="store_true",
        help="with --regen: write the new image to the sample's file when it is missing or differs",
    )
    p.add_argument("--json", action="store_true", help="the record as JSON")
    add_lora_arg(p)
    add_workspace_arg(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "repair",
        help="make the store and the image folders agree: rebuild a lost or damaged store from the images",
        description="Rebuilds a missing, empty or damaged discovery.db from the experiment folders "
        "(each PNG carries its full record; a damaged database is renamed aside, never deleted, and "
        "the marks still readable in it are put back), gives rows to images a killed run left "
        "unrecorded, and lists images that are missing (--regen makes them again). Files sdp did "
        "not write are never touched.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these experiments (default: all)")
    p.add_argument(
        "--regen", action="store_true", help="make missing images again with the experiment's backend"
    )
    add_workspace_arg(p)
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("fav", help="mark samples as favourites (--off to unmark)")
    p.add_argument("name", help="experiment name")
    p.add_argument("indices", type=nonneg, nargs="+", metavar="INDEX")
    p.add_argument("--off", action="store_true", help="remove the mark")
    add_workspace_arg(p)
    p.set_defaults(func=cmd_fav)

    p = sub.add_parser("rate", help="rate a sample from 1 to 5 stars (0 clears)")
    p.add_argument("name", help="experiment name")
    p.add_argument("index", type=nonneg)
    p.add_argument("stars", type=stars)
    add_workspace_arg(p)
    p.set_defaults(func=cmd_rate)

    p = sub.add_parser("reject", help="mark samples as rejected (--off to restore)")
    p.add_argument("name", help="experiment name")
    p.add_argument("indices", type=nonneg, nargs="+", metavar="INDEX")
    p.add_argument("--off", action="store_true", help="remove the mark")
    add_workspace_arg(p)
    p.set_defaults(func=cmd_reject)
