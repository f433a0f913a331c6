"""Model families: which diffusers text-to-image models the ``diffusers`` backend runs,
how a model's family is found, and what each family can do and defaults to.

A model's family comes from the model itself, never from its name: a folder's (or a
cached Hugging Face model's) ``model_index.json`` names its pipeline class, and a
single-file checkpoint's tensor names say what it is (read from the safetensors
header, as diffusers' own ``infer_diffusers_model_type`` does). All of it is plain file
reading: this module imports neither torch nor diffusers, so ``sdp check`` can say a
local model's family in an instant.

Per-family defaults (size, steps, guidance, scheduler) are what a model of the family
is used with; ``sdp run`` gives them to the settings a template leaves unset.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "Family",
    "ModelInfo",
    "FAMILIES",
    "TINY_FAMILIES",
    "SINGLE_FILE_SUFFIXES",
    "family_by_key",
    "families_summary",
    "detect_model",
    "detect_folder",
    "detect_single_file",
    "is_tiny_name",
    "own_lora_dir",
    "own_lora_names",
    "lora_dirs_for",
]

#: File suffixes of single-file checkpoints.
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")

#: Scheduler names of the models trained with noise (DDPM-style) schedules.
_NOISE_SCHEDULERS = ("ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm++2m", "dpm++2m_karras", "unipc")
#: Scheduler names of the flow-matching models (SD 3, Flux).
_FLOW_SCHEDULERS = ("flow_euler",)


@dataclass(frozen=True)
class Family:
    """A family of text-to-image models and what the backend does with it.

    Attributes:
        key: the short name (``sd1``, ``sd2``, ``sdxl``, ``sd3``, ``flux``, ``pixart``).
        label: the name users know (``SD 1.x``, ``SDXL``, …).
        pipelines: the diffusers pipeline classes of the family.
        defaults: settings a template leaves unset take these (``width``, ``height``,
            ``steps``, ``guidance``, ``scheduler``).
        negative: takes a negative prompt.
        guidance: ``@guidance`` means something (classifier-free or embedded guidance).
        weighting: A1111 prompt weighting is built into the prompt embeddings (compel).
        lora: LoRA adapters load (diffusers' ``load_lora_weights``).
        single_file: single-file checkpoints load (diffusers' ``from_single_file``).
        schedulers: the ``@scheduler`` names that apply.
        config_repo: the Hugging Face model whose configuration files a single-file
            checkpoint of the family is loaded with.
    """

    key: str
    label: str
    pipelines: tuple[str, ...]
    defaults: Mapping[str, Any]
    negative: bool = True
    guidance: bool = True
    weighting: bool = False
    lora: bool = True
    single_file: bool = True
    schedulers: tuple[str, ...] = _NOISE_SCHEDULERS
    config_repo: str = ""


def _defaults(size: int, steps: int, guidance: float, scheduler: str) -> dict[str, Any]:
    return {"width": size, "height": size, "steps": steps, "guidance": guidance, "scheduler": scheduler}


FAMILIES: tuple[Family, ...] = (
    Family(
        "sd1",
        "SD 1.x",
        ("StableDiffusionPipeline",),
        _defaults(512, 50, 7.5, "ddim"),
        weighting=True,
        config_repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
    ),
    Family(
        "sd2",
        "SD 2.x",
        ("StableDiffusionPipeline",),
        _defaults(768, 50, 7.5, "ddim"),
        weighting=True,
        config_repo="stabilityai/stable-diffusion-2-1",
    ),
    Family(
        "sdxl",
        "SDXL",
        ("StableDiffusionXLPipeline",),
        _defaults(1024, 40, 5.0, "euler"),
        weighting=True,
        config_repo="stabilityai/stable-diffusion-xl-base-1.0",
    ),
    Family(
        "sd3",
        "SD 3.x",
        ("StableDiffusion3Pipeline",),
        _defaults(1024, 28, 7.0, "flow_euler"),
        schedulers=_FLOW_SCHEDULERS,
        config_repo="stabilityai/stable-diffusion-3-medium-diffusers",
    ),
    Family(
        "flux",
        "Flux",
        ("FluxPipeline",),
        _defaults(1024, 28, 3.5, "flow_euler"),
        negative=False,
        schedulers=_FLOW_SCHEDULERS,
        config_repo="black-forest-labs/FLUX.1-dev",
    ),
    Family(
        "pixart",
        "PixArt",
        ("PixArtAlphaPipeline", "PixArtSigmaPipeline"),
        _defaults(1024, 20, 4.5, "dpm++2m"),
        lora=False,
        single_file=False,
    ),
)

_BY_KEY = {f.key: f for f in FAMILIES}
_BY_PIPELINE = {p: f for f in FAMILIES for p in f.pipelines if f.key != "sd1"}

#: The tiny random-weight models (built locally, see :mod:`.tiny`) and their families.
TINY_FAMILIES: dict[str, str] = {
    "tiny": "sd2",
    "tiny-sdxl": "sdxl",
    "tiny-sd3": "sd3",
    "tiny-flux": "flux",
    "tiny-pixart": "pixart",
}


def family_by_key(key: str) -> Family:
    return _BY_KEY[key]


def families_summary() -> str:
    """One line naming the families, for ``--help`` and ``sdp plugins``."""
    return ", ".join(f.label for f in FAMILIES)


def is_tiny_name(model: str) -> bool:
    return model.strip().lower() in TINY_FAMILIES


@dataclass(frozen=True)
class ModelInfo:
    """What was found out about a model without loading it.

    ``kind`` is ``tiny``, ``folder``, ``file`` or ``hub``; ``family`` is ``None`` when it
    cannot be told before loading (a ``.ckpt`` file, a Hub model not cached yet);
    ``pipeline`` is the diffusers pipeline class name when known; ``defaults`` the
    family's defaults adjusted to this model (its native size, a Flux model without
    guidance); ``guidance`` whether ``@guidance`` means something for it."""

    model: str
    kind: str
    family: Family | None
    pipeline: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    guidance: bool = True
    note: str = ""

    @property
    def label(self) -> str:
        return self.family.label if self.family is not None else "unknown family"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _info(model: str, kind: str, family: Family | None, pipeline: str | None, **adjust: Any) -> ModelInfo:
    if family is None:
        return ModelInfo(model, kind, None, pipeline)
    defaults = dict(family.defaults)
    guidance = adjust.pop("guidance", True)
    defaults.update({k: v for k, v in adjust.items() if v is not None})
    if not guidance:
        defaults["guidance"] = 0.0
    return ModelInfo(model, kind, family, pipeline, defaults, guidance)


def detect_folder(model: str, folder: Path, kind: str = "folder") -> ModelInfo:
    """A diffusers folder's family, from its ``model_index.json`` and component configs."""
    index = _read_json(folder / "model_index.json")
    pipeline = str(index.get("_class_name", "")) or None
    family = _BY_PIPELINE.get(pipeline or "")
    if family is None:
        return ModelInfo(model, kind, None, pipeline)
    size = None
    guidance = True
    if family.key == "sd2":  # StableDiffusionPipeline: SD 1.x or 2.x by its text encoder
        text = _read_json(folder / "text_encoder" / "config.json")
        scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
        v_pred = scheduler.get("prediction_type") == "v_prediction"
        if text.get("hidden_size") != 1024 and not v_pred:
            family = _BY_KEY["sd1"]
    denoiser = _read_json(folder / "unet" / "config.json") or _read_json(
        folder / "transformer" / "config.json"
    )
    vae = _read_json(folder / "vae" / "config.json")
    if family.key == "flux":
        guidance = bool(denoiser.get("guidance_embeds", True))
    elif isinstance(denoiser.get("sample_size"), int) and vae.get("block_out_channels"):
        size = int(denoiser["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    steps = 4 if family.key == "flux" and not guidance else None  # schnell-like: a few steps
    return _info(model, kind, family, pipeline, width=size, height=size, steps=steps, guidance=guidance)


def safetensors_keys(path: Path) -> dict[str, Any]:
    """The tensor names of a ``.safetensors`` file with their shapes (the JSON header,
    read without loading a tensor); empty when the file is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return {}
            (n,) = struct.unpack("<Q", head)
            if n > 100 * 2**20:
                return {}
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return {}
    if not isinstance(header, dict):
        return {}
    return {k: v.get("shape") for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def _family_of_keys(keys: Mapping[str, Any]) -> tuple[Family | None, bool]:
    """(family, guidance) from a checkpoint's tensor names, as diffusers tells them."""
    has = keys.__contains__

    def starts(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if starts("conditioner.embedders.") and starts("model.diffusion_model.input_blocks."):
        return _BY_KEY["sdxl"], True
    for prefix in ("", "model.diffusion_model."):
        if has(prefix + "joint_blocks.0.context_block.adaLN_modulation.1.bias"):
            return _BY_KEY["sd3"], True
        if has(prefix + "double_blocks.0.img_attn.norm.key_norm.scale"):
            return _BY_KEY["flux"], has(prefix + "guidance_in.in_layer.weight")
    if starts("model.diffusion_model.input_blocks."):
        if starts("cond_stage_model.model."):  # OpenCLIP: SD 2.x
            return _BY_KEY["sd2"], True
        return _BY_KEY["sd1"], True
    return None, True


def detect_single_file(model: str, path: Path) -> ModelInfo:
    """A single-file checkpoint's family from its tensor names (``.safetensors`` only:
    a pickled ``.ckpt`` is not opened here; its family is told when it loads)."""
    if path.suffix.lower() != ".safetensors":
        return ModelInfo(
            model, "file", None, None, note="a pickled checkpoint: its family is told when it loads"
        )
    keys = safetensors_keys(path)
    family, guidance = _family_of_keys(keys)
    if family is None:
        note = "not a checkpoint diffusers can load" if keys else "not a readable safetensors file"
        return ModelInfo(model, "file", None, None, note=note)
    steps = 4 if family.key == "flux" and not guidance else None
    return _info(model, "file", family, family.pipelines[0], steps=steps, guidance=guidance)


def _hub_folder(model: str) -> Path | None:
    """The cached snapshot folder of a Hugging Face model, if its ``model_index.json`` is
    in the local cache (nothing is downloaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # the core install: no Hub client
        return None
    try:
        found = try_to_load_from_cache(model, "model_index.json")
    except Exception:  # noqa: BLE001 - an id the Hub client refuses is simply not cached
        return None
    return Path(found).parent if isinstance(found, str) else None


def detect_model(model: str, tiny_folder: Path | None = None) -> ModelInfo:
    """Everything that can be told about ``model`` (a tiny name, a folder, a file, or a
    Hugging Face id) without loading it or touching the network. ``tiny_folder`` is the
    built tiny model's folder when the caller has it."""
    name = model.strip()
    if is_tiny_name(name):
        family = _BY_KEY[TINY_FAMILIES[name.lower()]]
        return _info(model, "tiny", family, family.pipelines[-1], width=64, height=64)
    path = Path(name).expanduser()
    if path.is_dir():
        return detect_folder(model, path)
    if path.is_file():
        return detect_single_file(model, path)
    cached = _hub_folder(name) if "/" in name and not os.path.isabs(name) else None
    if cached is not None:
        return replace(detect_folder(model, cached), kind="hub")
    return ModelInfo(model, "hub", None, None)


def own_lora_dir(model: str) -> Path | None:
    """A model's own LoRA adapters: a local model folder's ``loras/`` subfolder, or
    where a tiny model's are built (see :func:`own_lora_names`)."""
    from stable_discovery.backends.tiny import tiny_loras_path

    name = model.strip()
    if is_tiny_name(name):
        return tiny_loras_path(name, build=False)
    path = Path(name).expanduser()
    if path.is_dir() and (path / "loras").is_dir():
        return path / "loras"
    return None


def own_lora_names(model: str) -> tuple[str, ...]:
    """The names of a tiny model's own LoRAs, known before they are built."""
    from stable_discovery.backends.tiny import TINY_LORAS

    return TINY_LORAS.get(model.strip().lower(), ())


def lora_dirs_for(model: str, dirs: Sequence[Path | str]) -> list[Path]:
    """Where the LoRAs of a run on ``model`` come from: the run's folders, then the
    model's own."""
    found = [Path(d) for d in dirs]
    own = own_lora_dir(model)
    if own is not None:
        found.append(own)
    return found
