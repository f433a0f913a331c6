"""What ``sdp check`` and ``sdp run`` share about models and LoRAs: the ``--loras``
option, the LoRA tags checked when the template loads, and each model's family.

Nothing here imports torch: families are told from the models' files
(:mod:`stable_discovery.backends.families`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_lora_arg", "add_model_args", "lora_dirs", "check_loras", "run_models", "model_lines"]


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``sdp run``'s options about models: ``--model``, ``--loras``, ``--device``,
    ``--max-models``, ``--model-config``."""
    from stable_discovery.backends.families import families_summary

    p.add_argument(
        "--model",
        help="model (overrides @model): a Hugging Face id, a diffusers folder, a single-file "
        ".safetensors/.ckpt checkpoint, or tiny, tiny-sdxl, tiny-sd3, tiny-flux, tiny-pixart "
        f"(random weights, no download). Families: {families_summary()}",
    )
    add_lora_arg(p)
    p.add_argument(
        "--device",
        metavar="DEV",
        help="where the diffusers backend runs: cpu, cuda, cuda:1, mps (default: @device, else "
        "cuda when there is a GPU)",
    )
    p.add_argument(
        "--max-models",
        type=positive,
        metavar="N",
        help="keep at most N models loaded: a run over several @model values goes through them "
        "N at a time, each loaded once (default: all loaded together)",
    )
    p.add_argument(
        "--model-config",
        metavar="DIR",
        help="a diffusers folder (or Hugging Face id) of the same family whose configuration files "
        "single-file checkpoints load with (default: the family's reference model, from the "
        "Hugging Face cache)",
    )


def add_lora_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--loras",
        metavar="DIR",
        action="append",
        type=Path,
        help="a folder of LoRA files for <lora:NAME:WEIGHT> tags, NAME.safetensors (repeatable; "
        "default: loras/ beside the template; a model folder's own loras/ is searched too)",
    )


def lora_dirs(args: argparse.Namespace) -> tuple[Path, ...]:
    """``--loras`` folders, else ``loras/`` beside the template; absolute."""
    from stable_discovery.language.loras import default_lora_dirs

    dirs = args.loras or default_lora_dirs(getattr(args, "file", None))
    return tuple(Path(d).expanduser().absolute() for d in dirs)


def run_models(program: Any, model_override: str | None = None) -> list[str]:
    """The models a run of ``program`` uses: ``--model``, else ``@model``'s values, else
    the default."""
    from stable_discovery.language.settings import GENERATION_DEFAULTS

    if model_override:
        return [model_override]
    info = program.settings.get("model")
    return [str(v) for v in info.values] if info is not None else [str(GENERATION_DEFAULTS["model"])]


def check_loras(program: Any, dirs: Sequence[Path], models: Sequence[str]) -> None:
    """A :class:`TemplateError` at the first LoRA tag of the template (or a wildcard file
    it reads) that names no LoRA file of ``dirs`` or of the models' own adapters."""
    from stable_discovery.backends.families import lora_dirs_for, own_lora_names
    from stable_discovery.language.loras import LORA_TAG, LoraLibrary, check_lora_tags, has_lora_tag

    tagged = [p for p in program.wildcard_files if has_lora_tag(p)]  # each file scanned once
    if not LORA_TAG.search(program.source.text) and not tagged:
        return
    search: list[Path] = []
    extra: list[str] = []
    for model in models:
        for d in lora_dirs_for(model, dirs):
            if d not in search:
                search.append(d)
        extra.extend(own_lora_names(model))
    elsewhere = dict.fromkeys(own_lora_names("tiny"), "the tiny models (--model tiny)")
    check_lora_tags(program.source, tagged, LoraLibrary(search or dirs, extra, elsewhere))


def model_lines(models: Sequence[str]) -> list[str]:
    """One line per model: its family and what it is (``sdp check``)."""
    from stable_discovery.backends.families import detect_model

    kinds = {
        "tiny": "a tiny random-weights model, built locally on first use",
        "folder": "a local diffusers folder",
        "file": "a single-file checkpoint",
        "hub": "a Hugging Face model",
    }
    width = max(len(m) for m in models) + 2
    lines = []
    for model in models:
        info = detect_model(model)
        path = Path(model).expanduser()
        looks_local = (
            model.startswith((".", "/", "~"))
            or model.count("/") > 1
            or path.suffix
            in (
                ".safetensors",
                ".ckpt",
            )
        )
        if info.family is None and looks_local and not path.exists():
            what = "no such folder or file"
        elif info.family is not None:
            what = f"{info.family.label} ({kinds[info.kind]})"
        elif info.kind == "hub":
            what = "a Hugging Face id (its family is known once it is downloaded)"
        elif info.pipeline:
            what = f"a {info.pipeline}: not a text-to-image family sdp runs"
        else:
            what = f"family unknown ({info.note or 'no model_index.json'})"
        lines.append(f"  {model}".ljust(width + 2) + what)
    return lines
