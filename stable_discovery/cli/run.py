"""``sdp run``: generate an experiment's images (and resume it)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from stable_discovery.cli.args import (
    SAMPLER_HELP,
    add_template_args,
    add_workspace_arg,
    backend_factory,
    integer,
    load_template,
    nonneg,
    open_store,
    template_sampler,
)
from stable_discovery.cli.models import add_model_args, check_loras, lora_dirs, run_models
from stable_discovery.errors import UsageError

__all__ = ["add_commands"]


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from stable_discovery import plugins
    from stable_discovery.run.executors import make_executor
    from stable_discovery.run.runner import RunOptions, RunParts
    from stable_discovery.run.runplan import resolve_plan
    from stable_discovery.store.database import ENV_WORKSPACE, workspace_path

    # samplers that read the store (exploit) look where this run writes
    os.environ[ENV_WORKSPACE] = str(workspace_path(args.workspace))
    program = load_template(args)
    sampler = template_sampler(program, args.sampler)
    specs = _setting_specs()
    overrides = _overrides(args, specs)
    backend = args.backend if args.backend is not None else "diffusers"
    sink_factories = _sink_factories(args.sink or [])
    dirs = lora_dirs(args)
    check_loras(program, dirs, run_models(program, args.model))
    options = RunOptions(
        name=_experiment_name(args),
        backend=backend,
        batch=args.batch,
        count=args.count,
        seed=args.seed,
        sampler=args.sampler,
        overrides=overrides,
        sinks=tuple(args.sink or ()),
        backend_options=_backend_options(args, program, backend, dirs),
        lora_dirs=tuple(str(d) for d in dirs),
        max_models=args.max_models,
    )
    factory = backend_factory(backend)
    executor = make_executor(
        getattr(args, "executor", "local"),
        backend,
        options.backend_options,
        getattr(args, "address", None),
        getattr(args, "workers", None),
        factory,
        backend_lookup=plugins.backends,
    )
    parts = RunParts(
        backend_factory=factory,
        sampler=sampler,
        sink_factories=sink_factories,
        hooks=plugins.get_plugin_manager().hook,
        setting_specs=specs,
        executor=executor,
    )
    template_path = str(args.file) if args.file is not None else None
    # bad input (a seed or count the store cannot hold) is refused before the store is made
    resolve_plan(program, template_path, options, sampler, specs)
    _check_folder(args, options.name)
    return _finish(args, _run(args, program, template_path, options, parts))


def _run(args: argparse.Namespace, program: Any, template_path: str | None, options: Any, parts: Any) -> Any:
    """Run the experiment in the workspace's store (made when missing); a fault of the
    machine comes out as one line with the command that resumes."""
    from stable_discovery.cli.progress import RunReport
    from stable_discovery.run.runner import run_experiment

    report = RunReport()
    with open_store(args, "create") as store:
        try:
            return run_experiment(store, program, template_path, options, parts, report)
        except Exception as exc:  # a fault of the machine gets the resume command; the rest is re-raised
            found = _run_fault(args, exc, store, report)
            if found is None:
                raise
            raise found from None


def _check_folder(args: argparse.Namespace, name: str) -> None:
    """In a workspace without a store yet, refuse a folder of someone else's files
    before the store is made (the runner checks again, under the experiment's lock)."""
    from stable_discovery.run.files import check_new_folder
    from stable_discovery.store.database import DB_FILE, workspace_path
    from stable_discovery.store.images import scan_folder

    workspace = workspace_path(args.workspace)
    folder = workspace / name
    if not (workspace / DB_FILE).exists() and folder.is_dir():
        check_new_folder(folder, name, scan_folder(folder, ()))


def _run_fault(args: argparse.Namespace, exc: Exception, store: Any, report: Any) -> Exception | None:
    """A fault of the machine during a run (a full disk, a read-only folder, a damaged
    database) as one line, with the command that resumes once it is fixed; None for
    any other exception."""
    from stable_discovery.store.faults import StoreFault, fault

    found = exc if isinstance(exc, StoreFault) else fault(exc, store.db_path)
    if found is None:
        return None
    report.generated()  # ends the progress bar's line
    name = report.experiment.name if report.experiment is not None else _experiment_name(args)
    again = " ".join(_resume_command(args, name))
    if report.experiment is None:
        return StoreFault(f"{found}\nonce fixed, run it again:\n  {again}")
    done = report.done if report.done is not None else report.experiment.done
    return StoreFault(
        f"{found}\n{done} of {report.experiment.count} done; once fixed, resume with:\n  {again}"
    )


def _batch(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"a batch is 1 to 4096 images, not {value}")
    return value


def _backend_options(
    args: argparse.Namespace, program: Any, backend: str, dirs: tuple[Path, ...]
) -> dict[str, Any]:
    """The diffusers backend's options from ``--device`` (else ``@device``),
    ``--max-models``, ``--model-config`` and the LoRA folders. Other backends take none
    of them: giving one of those flags with another backend is an error (``@device`` in
    a template is left to the diffusers backend, so a quick ``--backend dummy`` run of
    the same template works)."""
    given = {
        "--device": args.device,
        "--max-models": args.max_models,
        "--model-config": args.model_config,
    }
    if backend != "diffusers":
        flags = [flag for flag, value in given.items() if value is not None]
        if flags and backend != "dummy":
            raise UsageError(f"{' and '.join(flags)} go with the diffusers backend, not {backend!r}")
        return {}
    if args.device is not None and getattr(args, "executor", "local") == "ray":
        raise UsageError("--device goes with --executor local: Ray gives each worker its own GPU")
    options: dict[str, Any] = {"lora_dirs": [str(d) for d in dirs]}
    device = args.device or program.setting("device")
    if device is not None and getattr(args, "executor", "local") != "ray":
        options["device"] = str(device)
    if args.max_models is not None:
        options["max_models"] = args.max_models
    if args.model_config is not None:
        options["single_file_config"] = str(Path(args.model_config).expanduser().absolute())
    return options


def _setting_specs() -> dict[str, Any]:
    """Every setting by name: the built-in ones and the plugins'."""
    from stable_discovery import plugins
    from stable_discovery.language.settings import BUILTIN_SETTINGS

    specs = {s.name: s for s in BUILTIN_SETTINGS}
    specs.update({s.name: s for s in plugins.setting_specs()})
    return specs


def _overrides(args: argparse.Namespace, specs: dict[str, Any]) -> dict[str, str]:
    """``--set`` and ``--model``, checked."""
    from stable_discovery.run.runplan import parse_overrides

    pairs = list(args.set or [])
    if args.model is not None:
        pairs.append(f"model={args.model}")
    return parse_overrides(pairs, specs)


def _sink_factories(names: list[str]) -> dict[str, Any]:
    """The installed sinks, once every name ``--sink`` gave is known to be one of them."""
    from stable_discovery import plugins

    factories = plugins.sinks()
    for sink in names:
        if sink not in factories:
            known = ", ".join(factories) or "none installed"
            raise UsageError(f"unknown sink {sink!r}; sinks: {known}")
    return factories


def _experiment_name(args: argparse.Namespace) -> str:
    from stable_discovery.store.database import check_name

    name = args.name or (args.file.stem if args.file is not None else None)
    if name is None:
        raise UsageError("give --name NAME for a template given with -e")
    check_name(str(name))
    return str(name)


def _finish(args: argparse.Namespace, result: Any) -> int:
    """The last line of ``sdp run`` and its exit status (130: stopped, resumable)."""
    if result.interrupted:
        again = " ".join(_resume_command(args, result.experiment))
        sys.stderr.write(f"stopped: {result.done} of {result.count} done. Resume with:\n  {again}\n")
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


def add_commands(sub: Any) -> None:
    """Add ``sdp run`` to the ``sdp`` parser."""
    p = sub.add_parser("run", help="generate the images of an experiment (resumes when run again)")
    add_template_args(p)
    p.add_argument("--name", help="experiment name (default: the template's file name)")
    p.add_argument("--backend", help="diffusers (default) | dummy | a plugin's")
    add_model_args(p)
    p.add_argument("--count", type=nonneg, metavar="N", help="number of images (default: @count)")
    p.add_argument(
        "--batch", type=_batch, metavar="B", help="images per backend call (default: @batch, else 4)"
    )
    p.add_argument("--seed", type=integer, help="sampler seed (default: @seed)")
    p.add_argument("--sampler", metavar="NAME", help=SAMPLER_HELP)
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a generation setting, e.g. --set size=256x256 (repeatable)",
    )
    p.add_argument(
        "--sink", action="append", metavar="NAME", help="an extra output from a plugin (repeatable)"
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local (default): this process; ray: Ray workers, one per GPU (pip install -e '.[ray]')",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="with --executor ray: the cluster to join ('auto': the one `ray start` made here)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="with --executor ray: how many workers (default: one per GPU; else per CPU, at most 4)",
    )
    add_workspace_arg(p)
    p.set_defaults(func=cmd_run)
