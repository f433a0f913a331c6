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
    from stable_discovery.cli.clock import command_started
    from stable_discovery.run.executors import make_executor
    from stable_discovery.run.runner import RunOptions, RunParts
    from stable_discovery.run.runplan import resolve_plan
    from stable_discovery.store.database import ENV_WORKSPACE, workspace_path

    started = command_started()
    backend = args.backend if args.backend is not None else "diffusers"
    if backend == "diffusers" and getattr(args, "executor", "local") != "ray":
        _import_in_background()  # torch and diffusers load while the template compiles
    # samplers that read the store (exploit) look where this run writes
    os.environ[ENV_WORKSPACE] = str(workspace_path(args.workspace))
    program = load_template(args)
    sampler = template_sampler(program, args.sampler)
    specs = _setting_specs()
    overrides = _overrides(args, specs)
    sink_factories = _sink_factories(args.sink or [])
    dirs = lora_dirs(args)
    check_loras(program, dirs, run_models(program, args.model))
    options = RunOptions(
        name=_experiment_name(args),
        backend=backend,
        batch=args.batch,
        encoders=args.encoders,
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
    return _finish(args, _run(args, program, template_path, options, parts, started))


def _import_in_background() -> None:
    """Import torch and diffusers on a daemon thread, so that loading the model, which
    needs them, starts with them already there."""
    import threading

    def warm() -> None:
        from stable_discovery.backends.diffusers_backend import check_dependencies

        try:
            check_dependencies()
        except Exception:  # noqa: BLE001 - the run reports a missing package when it needs it
            pass

    threading.Thread(target=warm, name="sdp-import", daemon=True).start()


def _run(
    args: argparse.Namespace,
    program: Any,
    template_path: str | None,
    options: Any,
    parts: Any,
    started: float | None = None,
) -> Any:
    """Run the experiment in the workspace's store (made when missing); a fault of the
    machine comes out as one line with the command that resumes."""
    from stable_discovery.cli.progress import RunReport
    from stable_discovery.run.runner import run_experiment

    report = RunReport()
    with open_store(args, "create") as store:
        try:
            return run_experiment(store, program, template_path, options, parts, report, started=started)
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


def _batch(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"a batch is 1 to 4096 images (or auto), not {value}")
    return value


def _encoders(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"encoders are 0 to 64 threads, not {value}")
    return value


def _backend_options(
    args: argparse.Namespace, program: Any, backend: str, dirs: tuple[Path, ...]
) -> dict[str, Any]:
    """The diffusers backend's options from ``--device`` (else ``@device``),
    ``--max-models``, ``--model-config`` and the LoRA folders. Other backends take none
    of them: giving one of those flags with another backend is an error (``@device`` in
    a template is left to the diffusers backend, so a quick ``--backend dummy`` run of
    the same template works)."""
    speed = _speed_options(args, program)
    given = {
        "--device": args.device,
        "--max-models": args.max_models,
        "--model-config": args.model_config,
        **{_SPEED_FLAGS[k]: v for k, v in speed.items() if getattr(args, k, None) is not None},
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
    options.update(speed)
    return options


#: The diffusers backend's speed options: argument name → flag.
_SPEED_FLAGS = {
    "optimize": "--optimize",
    "compile": "--compile",
    "compile_backend": "--compile-backend",
    "cuda_graphs": "--cuda-graphs",
    "channels_last": "--channels-last",
    "fused_qkv": "--fused-qkv",
    "sdpa": "--sdpa",
    "dtype": "--dtype",
}


def _speed_options(args: argparse.Namespace, program: Any) -> dict[str, Any]:
    """The speed knobs given on the command line (else ``@optimize``, ``@compile``), as
    the diffusers backend's arguments."""
    found = {k: getattr(args, k, None) for k in _SPEED_FLAGS}
    if found["optimize"] is None and program.setting("optimize") is not None:
        found["optimize"] = program.setting("optimize") == "on"
    if found["compile"] is None and program.setting("compile") is not None:
        found["compile"] = program.setting("compile")
    return {k: v for k, v in found.items() if v is not None}


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
    first = ""
    if result.first_image_s is not None:
        first = f"; first image {result.first_image_s:.1f} s after the command"
        if result.load_s is not None and result.load_s >= 0.1:
            first += f", of which {result.load_s:.1f} s loading the backend"
    sys.stderr.write(
        f"done: {result.done} of {result.count} images ({result.generated} new, {rate:.2f} img/s{first})\n"
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
        "--batch",
        type=_batch,
        metavar="B",
        help="images per backend call, or auto: the largest batch that fits in the GPU's memory, "
        "found per model and size (default: @batch, else auto on a GPU, 4 elsewhere)",
    )
    p.add_argument(
        "--encoders",
        type=_encoders,
        metavar="N",
        help="threads that encode and write PNG files while the next batch is generated "
        "(default: half the cores, 2 to 8; 0: write between batches)",
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
    _add_speed_args(p)
    add_workspace_arg(p)
    p.set_defaults(func=cmd_run)


def _add_speed_args(p: argparse.ArgumentParser) -> None:
    """The diffusers backend's speed knobs (docs/performance.md)."""
    g = p.add_argument_group(
        "speed (diffusers backend; the same images, faster: docs/performance.md)",
    )
    g.add_argument(
        "--optimize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the knobs that pay on this device: on an NVIDIA GPU, torch.compile; on a CPU none "
        "(default: @optimize, else off); knobs given below win",
    )
    g.add_argument(
        "--compile",
        nargs="?",
        const="default",
        choices=("off", "default", "max-autotune"),
        help="torch.compile the UNet or transformer: default (the mode without a value) or "
        "max-autotune (minutes more to compile); off (default: @compile, else off)",
    )
    g.add_argument("--compile-backend", metavar="NAME", help="torch.compile's backend (default inductor)")
    g.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="replay the compiled denoiser as CUDA graphs (implies --compile; pays for small batches)",
    )
    g.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="UNet and VAE in channels-last memory format (default: off)",
    )
    g.add_argument(
        "--fused-qkv",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fuse each attention's query, key and value projections",
    )
    g.add_argument(
        "--sdpa",
        choices=("auto", "flash", "cudnn", "efficient", "math"),
        help="the fused attention's kernel (default auto: PyTorch picks; cudnn and efficient need CUDA)",
    )
    g.add_argument(
        "--dtype",
        choices=("auto", "float16", "bfloat16", "float32"),
        help="precision (default auto: float16 on a GPU, float32 on a CPU); bfloat16 gives "
        "slightly different images",
    )
