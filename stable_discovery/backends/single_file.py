"""Single-file checkpoints (``.safetensors``/``.ckpt``, as model sites offer them),
loaded through the family's ``from_single_file``.

A checkpoint holds weights only: diffusers also needs the configuration files of its
family (each component's config, the tokenizers, the scheduler), which it takes from a
reference model on the Hugging Face Hub. Here they come from, in order: the folder (or
id) given as ``single_file_config`` (``--model-config``), else the family's reference
model if its files are in the local Hugging Face cache, else — online only — the Hub.
Offline without them, the message names exactly what is missing and how to get it;
diffusers itself would silently go online.

torch and diffusers are imported by the caller; this module only uses what it is given.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from stable_discovery.backends.base import BackendError
from stable_discovery.backends.families import FAMILIES, Family, ModelInfo, family_by_key

__all__ = ["load_single_file", "family_of_model_type"]

#: diffusers' ``infer_diffusers_model_type`` names → our families.
_MODEL_TYPES = {
    "v1": "sd1",
    "v2": "sd2",
    "xl_base": "sdxl",
    "playground-v2-5": "sdxl",
    "sd3": "sd3",
    "sd35_medium": "sd3",
    "sd35_large": "sd3",
    "flux-dev": "flux",
    "flux-schnell": "flux",
}


def family_of_model_type(model_type: str) -> Family | None:
    key = _MODEL_TYPES.get(model_type)
    return family_by_key(key) if key is not None else None


def _first_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _family_from_checkpoint(model: str, source: str) -> ModelInfo:
    """A pickled checkpoint's family, told by diffusers from its tensor names."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type, load_single_file_checkpoint

    try:
        checkpoint = load_single_file_checkpoint(source, local_files_only=True)
        model_type = infer_diffusers_model_type(checkpoint)
    except Exception as e:
        raise BackendError(
            f"cannot load model {model!r}: the single file does not read as a checkpoint ({_first_line(e)})"
        ) from e
    family = family_of_model_type(model_type)
    if family is None:
        raise BackendError(
            f"cannot load model {model!r}: the single file is a {model_type!r} checkpoint; the diffusers "
            f"backend runs text-to-image checkpoints of these families: "
            f"{', '.join(f.label for f in FAMILIES if f.single_file)}"
        )
    return replace(ModelInfo(model, "file", family, family.pipelines[0]), defaults=dict(family.defaults))


def _config(model: str, family: Family, given: str | None, offline: bool) -> str:
    """Where the family's configuration files come from (a folder or a Hub id)."""
    if given:
        folder = Path(given).expanduser()
        if folder.is_dir() and not (folder / "model_index.json").is_file():
            raise BackendError(
                f"--model-config {given}: not a diffusers folder (no model_index.json); give a folder "
                f"saved with save_pretrained (a {family.label} model; its weights are not needed)"
            )
        return str(folder) if folder.is_dir() else given
    repo = family.config_repo
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "model_index.json")
    except Exception:  # noqa: BLE001 - no cache is a missing config, said below
        cached = None
    if isinstance(cached, str):
        return str(Path(cached).parent)
    if offline:
        raise BackendError(
            f"cannot load the single-file checkpoint {model!r} offline: it is a checkpoint of the "
            f"{family.label} family, "
            f"and diffusers needs the configuration files of {repo} (model_index.json, each "
            "component's config, the tokenizers and the scheduler; not its weights), which are not in "
            "the local Hugging Face cache. Ways out: --model-config DIR (a diffusers folder of a "
            f"{family.label} model, as save_pretrained writes it); or on a machine with network "
            f"`hf download {repo} --exclude '*.safetensors' '*.bin' '*.ckpt' '*.pt'` and copy the cache"
        )
    return repo


def load_single_file(
    diffusers: Any, model: str, info: ModelInfo, source: str, dtype: Any, config: str | None, offline: bool
) -> Any:
    """The pipeline of a single-file checkpoint (see the module docstring)."""
    if info.family is None:
        if Path(source).suffix.lower() == ".safetensors":
            raise BackendError(
                f"cannot load model {model!r}: a single file that is {info.note or 'not a checkpoint'}; "
                "give a single-file checkpoint of one of these families: "
                f"{', '.join(f.label for f in FAMILIES if f.single_file)}, a diffusers folder, "
                "or --model tiny"
            )
        info = _family_from_checkpoint(model, source)
    family = info.family
    assert family is not None
    if not family.single_file:
        raise BackendError(
            f"cannot load model {model!r}: diffusers loads no single-file {family.label} checkpoint; "
            "use the model's diffusers folder"
        )
    where = _config(model, family, config, offline)
    cls = getattr(diffusers, family.pipelines[0])
    extra: dict[str, Any] = {}
    if family.key in ("sd1", "sd2"):
        extra = {"safety_checker": None, "requires_safety_checker": False}
    try:
        return cls.from_single_file(source, config=where, dtype=dtype, local_files_only=offline, **extra)
    except Exception as e:
        raise BackendError(
            f"cannot load the single-file checkpoint {model!r} as {family.label} (configuration from "
            f"{where}): {_first_line(e)}"
        ) from e
