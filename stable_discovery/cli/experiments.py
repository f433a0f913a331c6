"""The store's commands: ``sdp runs``, ``show``, ``fav``, ``rate``, ``reject``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from stable_discovery.cli.args import add_workspace_arg, backend_factory, nonneg, open_store, plural, stars
from stable_discovery.cli.models import add_lora_arg
from stable_discovery.errors import UsageError

__all__ = ["add_commands"]


def cmd_runs(args: argparse.Namespace, out: TextIO) -> int:
    import time

    with open_store(args) as store:
        exps = store.experiments()
        if args.json:
            for e in exps:
                out.write(
                    json.dumps(
                        {
                            "name": e.name,
                            "template": e.template_path,
                            "sampler": e.sampler,
                            "seed": e.seed,
                            "count": e.count,
                            "done": e.done,
                            "backend": e.backend,
                            "overrides": e.overrides,
                            "created_at": e.created_at,
                            "updated_at": e.updated_at,
                            "archived": e.archived,
                        }
                    )
                    + "\n"
                )
            return 0
        if not exps:
            out.write(f"no experiments in {store.workspace}\n")
            return 0
        rows = [("NAME", "TEMPLATE", "DONE", "SAMPLER", "BACKEND", "UPDATED")]
        for e in exps:
            rows.append(
                (
                    e.name + (" (archived)" if e.archived else ""),
                    e.template_path or "-",
                    f"{e.done}/{e.count}",
                    e.sampler,
                    e.backend
                    + (" " + " ".join(f"{k}={v}" for k, v in e.overrides.items()) if e.overrides else ""),
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(e.updated_at)),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() + "\n")
    return 0


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
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
            out.write(f"file: {rec['path']}\n")
            if rec["seconds"] is not None:
                out.write(f"time: {rec['seconds']:.3f} s (batch of {rec['batch_size']})\n")
        if args.regen:
            from stable_discovery.run.runner import regenerate

            options = _regen_options(args, exp)
            _image, diff = regenerate(store, exp, args.index, backend_factory(exp.backend), options)
            if diff is None:
                out.write("regenerated; the stored file is missing, nothing to compare\n")
                return 1
            if diff == 0:
                out.write("regenerated: identical to the stored image\n")
            elif diff <= 1:
                out.write(f"regenerated: matches (max difference {diff}/255 per pixel)\n")
            else:
                out.write(f"regenerated: DIFFERS (max difference {diff}/255 per pixel)\n")
                return 1
    return 0


def cmd_fav(args: argparse.Namespace, out: TextIO) -> int:
    with open_store(args) as store:
        exp = store.require(args.name)
        store.rate(exp, args.indices, favourite=not args.off)
    word = "unmarked" if args.off else "marked"
    out.write(f"{word} {plural(len(args.indices), 'favourite')} in {args.name}\n")
    return 0


def cmd_rate(args: argparse.Namespace, out: TextIO) -> int:
    stars = None if args.stars == 0 else args.stars
    with open_store(args) as store:
        exp = store.require(args.name)
        store.rate(exp, [args.index], stars=stars)
    out.write(f"{args.name} #{args.index}: " + (f"{stars} stars\n" if stars else "rating cleared\n"))
    return 0


def cmd_reject(args: argparse.Namespace, out: TextIO) -> int:
    with open_store(args) as store:
        exp = store.require(args.name)
        store.rate(exp, args.indices, rejected=not args.off)
    word = "restored" if args.off else "rejected"
    out.write(f"{word} {plural(len(args.indices), 'image')} in {args.name}\n")
    return 0


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
    p = sub.add_parser("runs", help="list experiments (archived ones marked)")
    add_workspace_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line, one per experiment")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="print one sample's full record")
    p.add_argument("name", help="experiment name")
    p.add_argument("index", type=int, help="sample index")
    p.add_argument("--regen", action="store_true", help="generate the image again and compare")
    p.add_argument("--json", action="store_true", help="the record as JSON")
    add_lora_arg(p)
    add_workspace_arg(p)
    p.set_defaults(func=cmd_show)

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
