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
from typing import Any, Iterable, Optional, Sequence, TextIO

from stable_discovery import __version__
from stable_discovery.errors import SdpError, UsageError

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
    from stable_discovery import plugins
    from stable_discovery.language.program import load, loads

    extra = plugins.setting_specs()
    text = getattr(args, "expr", None)
    if text is not None and args.file is not None:
        raise UsageError("give a template file or -e TEXT, not both")
    if text is not None:
        return loads(text, "<-e>", args.wildcards or (), extra)
    if args.file is None:
        raise UsageError("no template: give a file, or -e 'TEMPLATE TEXT'")
    return load(args.file, args.wildcards, extra)


def _template_sampler(program: Any, requested: Optional[str] = None) -> Any:
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


def _add_workspace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workspace",
        type=Path,
        metavar="DIR",
        help="where experiments are kept (default: $SDP_WORKSPACE, else ./sdp-runs)",
    )


def _store(args: argparse.Namespace) -> Any:
    from stable_discovery.store.database import Store, workspace_path

    return Store(workspace_path(args.workspace))


def _backend_factory(name: str) -> Any:
    from stable_discovery import plugins

    factories = plugins.backends()
    if name not in factories:
        raise UsageError(f"unknown backend {name!r}; installed backends: {', '.join(factories)}")
    return factories[name]


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
    sampler = _template_sampler(program).name
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
    from stable_discovery.plugins import get_sampler

    program = _load(args)
    sampler = get_sampler("combinatorial")
    seed = program.setting("seed", 0)
    stop = program.count() if args.limit is None else min(args.limit, program.count())
    _emit(sampler.samples(program, 0, stop, seed), args.jsonl, out)
    return 0


def cmd_sample(args: argparse.Namespace, out: TextIO) -> int:
    program = _load(args)
    sampler = _template_sampler(program, args.sampler)
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
    from stable_discovery.errors import Source
    from stable_discovery.language.legacy_config import legacy_source
    from stable_discovery.language.wildcards import read_text_file

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


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery import plugins
    from stable_discovery.run.runner import RunOptions, parse_overrides, run_experiment
    from stable_discovery.language.settings import BUILTIN_SETTINGS

    from stable_discovery.store.database import ENV_WORKSPACE, workspace_path

    # samplers that read the store (exploit) look where this run writes
    os.environ[ENV_WORKSPACE] = str(workspace_path(args.workspace))
    program = _load(args)
    _template_sampler(program, args.sampler)
    specs = {s.name: s for s in BUILTIN_SETTINGS}
    specs.update({s.name: s for s in plugins.setting_specs()})
    pairs = list(args.set or [])
    if args.model is not None:
        pairs.append(f"model={args.model}")
    overrides = parse_overrides(pairs, specs)
    backend = args.backend
    if backend is None:
        backend = "diffusers"
    sink_factories = plugins.sinks()
    for sink in args.sink or []:
        if sink not in sink_factories:
            known = ", ".join(sink_factories) or "none installed"
            raise UsageError(f"unknown sink {sink!r}; sinks: {known}")
    name = args.name or (args.file.stem if args.file is not None else None)
    if name is None:
        raise UsageError("give --name NAME for a template given with -e")
    options = RunOptions(
        name=name,
        backend=backend,
        batch=args.batch,
        count=args.count,
        seed=args.seed,
        sampler=args.sampler,
        overrides=overrides,
        sinks=tuple(args.sink or ()),
    )
    backend_factory = _backend_factory(backend)
    from stable_discovery.run.executors import make_executor

    executor = make_executor(getattr(args, "executor", "local"), backend, options.backend_options,
                             getattr(args, "address", None), getattr(args, "workers", None), backend_factory)
    with _store(args) as store:
        def started(exp: Any) -> None:
            sys.stderr.write(
                f"experiment {exp.name}: {exp.done} of {exp.count} done, "
                f"images in {store.experiment_dir(exp.name)}\n"
            )

        result = run_experiment(
            store,
            program,
            str(args.file) if args.file is not None else None,
            options,
            backend_factory,
            sink_factories,
            hooks=plugins.get_plugin_manager().hook,
            setting_specs=specs,
            on_started=started,
            executor=executor,
        )
    if result.interrupted:
        again = " ".join(_resume_command(args, result.experiment))
        sys.stderr.write(
            f"stopped: {result.done} of {result.count} done. Resume with:\n  {again}\n"
        )
        return 130
    rate = result.generated / result.seconds if result.seconds > 0 else 0.0
    sys.stderr.write(
        f"done: {result.done} of {result.count} images ({result.generated} new, {rate:.2f} img/s)\n"
    )
    return 0


def _resume_command(args: argparse.Namespace, name: str) -> list[str]:
    import shlex

    argv = ["sdp", "run"] + [shlex.quote(a) for a in sys.argv[2:]] if sys.argv[1:2] == ["run"] else []
    if not argv:
        argv = ["sdp", "run", shlex.quote(str(args.file)), "--name", shlex.quote(name)]
    elif "--name" not in sys.argv:
        argv += ["--name", shlex.quote(name)]
    return argv


def cmd_runs(args: argparse.Namespace, out: TextIO) -> int:
    import time

    with _store(args) as store:
        exps = store.experiments()
        if args.json:
            for e in exps:
                out.write(json.dumps({
                    "name": e.name, "template": e.template_path, "sampler": e.sampler,
                    "seed": e.seed, "count": e.count, "done": e.done, "backend": e.backend,
                    "overrides": e.overrides, "created_at": e.created_at, "updated_at": e.updated_at,
                }) + "\n")
            return 0
        if not exps:
            out.write(f"no experiments in {store.workspace}\n")
            return 0
        rows = [("NAME", "TEMPLATE", "DONE", "SAMPLER", "BACKEND", "UPDATED")]
        for e in exps:
            rows.append((
                e.name,
                e.template_path or "-",
                f"{e.done}/{e.count}",
                e.sampler,
                e.backend + (" " + " ".join(f"{k}={v}" for k, v in e.overrides.items()) if e.overrides else ""),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(e.updated_at)),
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
    return 0


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    with _store(args) as store:
        exp = store.require(args.name)
        rec = store.record(exp, args.index)
        if rec is None:
            if not 0 <= args.index < exp.count:
                raise UsageError(f"{exp.name!r} has samples 0..{exp.count - 1}, not {args.index}")
            raise UsageError(f"sample {args.index} of {exp.name!r} is not generated yet")
        rec["path"] = str(store.experiment_dir(exp.name) / rec["file"])
        if args.json:
            out.write(json.dumps(rec, ensure_ascii=False, indent=2) + "\n")
        else:
            out.write(f"experiment: {exp.name}\nindex: {rec['index']}\n")
            out.write(f"prompt: {rec['prompt']}\n")
            out.write(f"negative: {rec['negative']}\n")
            out.write("settings: " + ", ".join(f"{k}={v}" for k, v in rec["settings"].items()) + "\n")
            out.write(f"seed: {rec['seed']}\n")
            out.write("trace:\n")
            for k, v in rec["trace"].items():
                out.write(f"  {k}: #{v['index']} {v['text']}\n")
            out.write(f"file: {rec['path']}\n")
            if rec["seconds"] is not None:
                out.write(f"time: {rec['seconds']:.3f} s (batch of {rec['batch_size']})\n")
        if args.regen:
            from stable_discovery.run.runner import regenerate

            _image, diff = regenerate(store, exp, args.index, _backend_factory(exp.backend))
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
    with _store(args) as store:
        exp = store.require(args.name)
        store.rate(exp, args.indices, favourite=not args.off)
    word = "unmarked" if args.off else "marked"
    out.write(f"{word} {_plural(len(args.indices), 'favourite')} in {args.name}\n")
    return 0


def cmd_rate(args: argparse.Namespace, out: TextIO) -> int:
    stars = None if args.stars == 0 else args.stars
    with _store(args) as store:
        exp = store.require(args.name)
        store.rate(exp, [args.index], stars=stars)
    out.write(f"{args.name} #{args.index}: " + (f"{stars} stars\n" if stars else "rating cleared\n"))
    return 0


def cmd_reject(args: argparse.Namespace, out: TextIO) -> int:
    with _store(args) as store:
        exp = store.require(args.name)
        store.rate(exp, args.indices, rejected=not args.off)
    word = "restored" if args.off else "rejected"
    out.write(f"{word} {_plural(len(args.indices), 'image')} in {args.name}\n")
    return 0


def _stars(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"stars are 1 to 5 (0 clears), not {text!r}") from None
    if not 0 <= value <= 5:
        raise argparse.ArgumentTypeError(f"stars are 1 to 5 (0 clears), not {value}")
    return value


def cmd_plugins(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery import plugins

    rows = plugins.plugin_rows()
    if args.json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return 0
    for row in rows:
        kind = "built-in" if row["builtin"] else (f"version {row['version']}" if row["version"] else "plugin")
        out.write(f"{row['name']} ({kind})\n")
        for hook in row["hooks"]:
            out.write(f"  {hook}\n")
    out.write("samplers: " + ", ".join(plugins.samplers()) + "\n")
    out.write("backends: " + ", ".join(plugins.backends()) + "\n")
    out.write("sinks: " + (", ".join(plugins.sinks()) or "none") + "\n")
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

    p = sub.add_parser("run", help="generate the images of an experiment (resumes when run again)")
    _add_template_args(p)
    p.add_argument("--name", help="experiment name (default: the template's file name)")
    p.add_argument("--backend", help="diffusers (default) | dummy | a plugin's")
    p.add_argument("--model", help="model id, local path, or 'tiny' (overrides @model)")
    p.add_argument("--count", type=_nonneg, metavar="N", help="number of images (default: @count)")
    p.add_argument("--batch", type=int, metavar="B", help="images per backend call (default: @batch, else 4)")
    p.add_argument("--seed", type=int, help="sampler seed (default: @seed)")
    p.add_argument("--sampler", help="random | combinatorial | shuffle | legacy (default: @sampler)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a generation setting, e.g. --set size=256x256 (repeatable)")
    p.add_argument("--sink", action="append", metavar="NAME", help="an extra output from a plugin (repeatable)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local (default): this process; ray: Ray workers, one per GPU (pip install -e '.[ray]')")
    p.add_argument("--address", metavar="ADDR",
                   help="with --executor ray: the cluster to join ('auto': the one `ray start` made here)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="with --executor ray: how many workers (default: one per GPU; else per CPU, at most 4)")
    _add_workspace_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="list experiments")
    _add_workspace_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="print one sample's full record")
    p.add_argument("name", help="experiment name")
    p.add_argument("index", type=int, help="sample index")
    p.add_argument("--regen", action="store_true", help="generate the image again and compare")
    p.add_argument("--json", action="store_true", help="the record as JSON")
    _add_workspace_arg(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("fav", help="mark samples as favourites (--off to unmark)")
    p.add_argument("name", help="experiment name")
    p.add_argument("indices", type=_nonneg, nargs="+", metavar="INDEX")
    p.add_argument("--off", action="store_true", help="remove the mark")
    _add_workspace_arg(p)
    p.set_defaults(func=cmd_fav)

    p = sub.add_parser("rate", help="rate a sample from 1 to 5 stars (0 clears)")
    p.add_argument("name", help="experiment name")
    p.add_argument("index", type=_nonneg)
    p.add_argument("stars", type=_stars)
    _add_workspace_arg(p)
    p.set_defaults(func=cmd_rate)

    p = sub.add_parser("reject", help="mark samples as rejected (--off to restore)")
    p.add_argument("name", help="experiment name")
    p.add_argument("indices", type=_nonneg, nargs="+", metavar="INDEX")
    p.add_argument("--off", action="store_true", help="remove the mark")
    _add_workspace_arg(p)
    p.set_defaults(func=cmd_reject)

    p = sub.add_parser("plugins", help="list installed plugins and the hooks they implement")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)
    from stable_discovery.cli.loop import add_commands as add_loop_commands  # sdp stats, sdp refine

    add_loop_commands(sub)

    from stable_discovery.cli.gallery import add_commands as add_gallery_commands

    add_gallery_commands(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
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
    except Exception as exc:  # a bug, not bad input: say so briefly
        if os.environ.get("SDP_DEBUG"):
            raise
        sys.stderr.write(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "this is a bug in stable-discovery; rerun with SDP_DEBUG=1 for the traceback "
            "and please report it\n"
        )
        return 70


def entry_point() -> None:  # pragma: no cover - console script wrapper
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
