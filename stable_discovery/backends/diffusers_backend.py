"""The ``diffusers`` backend: text-to-image models through Hugging Face diffusers and PyTorch.

* A model is a Hugging Face id (default ``stabilityai/stable-diffusion-2-1``), a local
  folder in the diffusers layout (``model_index.json`` and one folder per component), a
  single-file checkpoint (``.safetensors``/``.ckpt``, through ``from_single_file``), or
  one of the tiny random-weights pipelines built locally (``tiny``, ``tiny-sdxl``,
  ``tiny-sd3``, ``tiny-flux``, ``tiny-pixart``: :mod:`.tiny`).
* The pipeline class is the one the model's own ``model_index.json`` names
  (``DiffusionPipeline.from_pretrained``), for the families of :mod:`.families`: SD
  1.x/2.x, SDXL, SD 3.x, Flux, PixArt. What differs between families (negative prompts,
  guidance, prompt weighting, call arguments) is a small strategy object per family
  (:mod:`.pipelines`). A model is loaded once and kept until :meth:`DiffusersBackend.close`
  (or, with ``max_models``, until it is the least recently used of too many).
* ``<lora:NAME:WEIGHT>`` tags: each LoRA file is loaded once per model
  (``load_lora_weights``, peft) and batches switch between LoRA sets with
  ``set_adapters``; the tags are taken out of the text the encoders read.
* A1111 prompt weighting (``(word:1.3)``, ``BREAK``, long prompts in 75-token chunks) for
  SD 1.x/2.x and SDXL, through compel (:mod:`.encoders`), unless ``@weighting = none``.
* The batch's scheduler name picks the scheduler class; its config is the model's own.
* fp16 on CUDA, fp32 on CPU; PyTorch's fused attention (SDPA) by default. Speed knobs
  (:mod:`.speed`: ``torch.compile``, CUDA graphs, channels-last, fused QKV
  projections, the attention kernel) and ``optimize``, a preset of them for the device.
* One ``torch.Generator`` per image, seeded with the sample's seed and passed as a list,
  so an image depends only on its own sample, never on its batch.
* A model that cannot be loaded raises :class:`BackendError` with a short message that
  names the model, what was tried and the ways out; no traceback reaches the user.

torch and diffusers are imported when a backend first needs them, never at import time.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stable_discovery.backends.base import BackendError, Batch, OutOfMemory
from stable_discovery.backends.families import (
    SINGLE_FILE_SUFFIXES,
    ModelInfo,
    detect_folder,
    detect_model,
    detect_single_file,
    families_summary,
    lora_dirs_for,
    own_lora_names,
)
from stable_discovery.backends.hub import HubUnreachable, hub_unreachable
from stable_discovery.backends.pipelines import FamilyRunner, group_inputs, runner_for
from stable_discovery.backends.quiet import quiet_libraries
from stable_discovery.backends.speed import Knobs, apply_knobs, compile_mode, preset, unfuse
from stable_discovery.backends.tiny import (
    TINY_MODELS,
    is_tiny,
    tiny_folder_name,
    tiny_loras_path,
    tiny_model_path,
)
from stable_discovery.language.loras import LORA_TAG, LoraLibrary, split_lora_tags

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

__all__ = [
    "DiffusersBackend",
    "SCHEDULER_CLASSES",
    "SCHEDULER_LABELS",
    "scheduler_label",
    "check_dependencies",
    "quiet_libraries",
]

DEFAULT_MODEL = "stabilityai/stable-diffusion-2-1"

#: Our scheduler names → (diffusers class name, extra config). Every name of
#: ``settings.SCHEDULERS`` is here.
SCHEDULER_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}),
}

#: Our scheduler names → the sampler names A1111 writes in PNG metadata (``Sampler: …``).
SCHEDULER_LABELS: dict[str, str] = {
    "ddim": "DDIM",
    "pndm": "PLMS",
    "lms": "LMS",
    "euler": "Euler",
    "euler_a": "Euler a",
    "heun": "Heun",
    "dpm++2m": "DPM++ 2M",
    "dpm++2m_karras": "DPM++ 2M Karras",
    "unipc": "UniPC",
    "flow_euler": "Euler",
}

#: Fewer steps than this make the scheduler fail inside diffusers (PNDM's PLMS warm-up).
_MIN_STEPS: dict[str, int] = {"pndm": 4}

_INSTALL_HINT = (
    "install it with: pip install -e '.[diffusers]' "
    "(on a GPU machine, install PyTorch's CUDA build first: https://pytorch.org/get-started/locally/)"
)

_DTYPES = {
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}

_ATTENTION = ("sdpa", "eager", "xformers", "default")

_TRUE = {"1", "true", "yes", "on"}


def scheduler_label(name: str) -> str:
    """The A1111 sampler name of one of our scheduler names (the name itself if unknown)."""
    return SCHEDULER_LABELS.get(name, name)


def check_dependencies() -> None:
    """Raise :class:`BackendError` unless torch, diffusers and transformers import."""
    _modules()


#: One thread at a time imports torch and diffusers: ``sdp run`` imports them on a thread
#: of its own while the template compiles, and the backend's loader may ask meanwhile.
#: diffusers replaces its module with a lazy one at the end of its import; a second
#: thread let in half-way would keep the first, which lacks the lazy names.
_IMPORTING = threading.Lock()


def _modules() -> tuple[Any, Any]:
    """(torch, diffusers), imported quietly, or a BackendError saying how to install them."""
    with _IMPORTING:
        try:
            import torch
        except ImportError as e:
            raise BackendError(f"the diffusers backend needs PyTorch ({e}); {_INSTALL_HINT}") from None
        try:
            import diffusers  # noqa: F401 - the module object is taken from sys.modules below
            import transformers  # noqa: F401 - imported only to check that it is installed
        except ImportError as e:
            raise BackendError(
                f"the diffusers backend needs diffusers and transformers ({e}); {_INSTALL_HINT}"
            ) from None
        quiet_libraries()
    return torch, sys.modules["diffusers"]


def _offline() -> bool:
    """Whether the Hugging Face offline variables ask for no network."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _not_a_model(model: str) -> str:
    """The message for a ``--model`` that is no folder, file, tiny model or Hub id."""
    import difflib

    known = [*TINY_MODELS, DEFAULT_MODEL]
    close = difflib.get_close_matches(model, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"cannot load model {model!r}: no such folder or file, not one of the built-in tiny "
        f"models ({', '.join(TINY_MODELS)}), and not a Hugging Face model id (owner/name, such "
        f"as {DEFAULT_MODEL}). {hint}A folder in the diffusers layout or a .safetensors file "
        "works too"
    )


def _looks_like_path(model: str) -> bool:
    """A name that can only be a folder (a Hugging Face id is ``name`` or ``owner/name``)."""
    return (
        model.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or model.count("/") > 1
        or "\\" in model
        or bool(re.match(r"^[A-Za-z]:[\\/]", model))
        or model in (".", "..")
    )


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if nxt is None:
            break
        exc = nxt
    return exc


def _first_line(exc: BaseException, limit: int = 240) -> str:
    """An exception's message on one line, shortened."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001  # pragma: no cover - huggingface_hub always comes with diffusers
        return "~/.cache/huggingface/hub"


def _check_device(torch: Any, dev: str) -> None:
    """Refuse a GPU device that PyTorch does not see, saying why and what to do."""
    if dev.startswith("cuda") and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise BackendError(
            f"device {dev!r} was asked for but PyTorch sees no CUDA GPU (torch {torch.__version__}, "
            f"{build}). Ways out: run without a device setting (CPU), --model tiny to try the "
            "pipeline on CPU, or on a GPU machine install PyTorch's CUDA build "
            "(https://pytorch.org/get-started/locally/) before pip install -e '.[diffusers]'"
        )
    if dev == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise BackendError("device 'mps' was asked for but PyTorch sees no Apple GPU")


@dataclass
class _Loaded:
    """A loaded model: its pipeline, family runner, scheduler state and LoRA adapters."""

    pipe: Any
    runner: FamilyRunner
    base_scheduler: Any
    scheduler: str
    #: our LoRA name → the adapter name inside the pipeline, for every adapter loaded
    adapters: dict[str, str] = field(default_factory=dict)
    #: the (name, weight) set now applied; None until the first batch
    active: tuple[tuple[str, float], ...] | None = None
    library: LoraLibrary | None = None
    #: the speed knobs applied to this model (:func:`.speed.apply_knobs`)
    applied: dict[str, Any] = field(default_factory=dict)


class DiffusersBackend:
    """Text-to-image pipelines through diffusers (see the module docstring).

    Arguments:
        device: ``"auto"`` (CUDA when torch sees a GPU, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        dtype: ``None``/``"auto"`` (float16 on CUDA, float32 elsewhere), ``"float16"``,
            ``"bfloat16"`` or ``"float32"``.
        attention: ``"sdpa"`` (PyTorch's fused scaled-dot-product attention, the
            default), ``"eager"`` (plain matmul + softmax), ``"xformers"`` or ``"default"``
            (whatever diffusers picks).
        compile: ``torch.compile`` the denoiser (slow first batch of each shape, faster
            after; worth it for long runs on a GPU): ``True``/``"default"``,
            ``"max-autotune"``, or ``False``/``"off"``.
        compile_backend: the ``torch.compile`` backend (``"inductor"``; ``"eager"`` and
            ``"aot_eager"`` check the path on a CPU without generating code).
        cuda_graphs: replay the compiled denoiser as CUDA graphs (implies ``compile``).
        channels_last: UNet and VAE in channels-last memory format (``None``: off).
        fused_qkv: fuse the attention's query/key/value projections.
        sdpa: the fused attention's kernel: ``"auto"``, ``"flash"``, ``"cudnn"``,
            ``"efficient"`` or ``"math"``.
        optimize: the preset of knobs for the device (:func:`.speed.preset`); knobs
            given explicitly win over it.
        threads: torch's intra-op CPU threads (``torch.set_num_threads``); ``None`` takes
            ``$SDP_TORCH_THREADS``, else, on a CPU, half the cores (at least one): all
            cores oversubscribe a machine that does anything else (bench/RESULTS.md);
            a GPU run leaves torch's default.
        generator_device: where the per-image random generators live: ``"device"`` (the
            pipeline's device, the default) or ``"cpu"`` (the same starting noise on every
            machine, a little slower on GPU for ancestral schedulers).
        local_files_only: never touch the network; ``None`` follows ``HF_HUB_OFFLINE``.
        lora_dirs: the folders ``<lora:NAME:…>`` tags look in (``NAME.safetensors``),
            before a model folder's own ``loras/``.
        max_models: keep at most this many models loaded (the least recently used one
            goes first); ``None``: every model stays loaded until :meth:`close`.
        single_file_config: a diffusers folder (or Hugging Face id) whose configuration
            files single-file checkpoints are loaded with, instead of their family's
            reference model.
    """

    name = "diffusers"

    def __init__(
        self,
        device: str = "auto",
        dtype: str | None = None,
        attention: str = "sdpa",
        compile: bool | str | None = None,
        threads: int | None = None,
        generator_device: str = "device",
        local_files_only: bool | None = None,
        lora_dirs: Sequence[str] = (),
        max_models: int | None = None,
        single_file_config: str | None = None,
        compile_backend: str = "inductor",
        cuda_graphs: bool | None = None,
        channels_last: bool | None = None,
        fused_qkv: bool | None = None,
        sdpa: str | None = None,
        optimize: bool = False,
    ) -> None:
        if attention not in _ATTENTION:
            raise BackendError(f"unknown attention {attention!r}; known: {', '.join(_ATTENTION)}")
        if dtype is not None and dtype != "auto" and dtype not in _DTYPES:
            raise BackendError(f"unknown dtype {dtype!r}; known: auto, float16, bfloat16, float32")
        if generator_device not in ("device", "cpu"):
            raise BackendError("generator_device must be 'device' or 'cpu'")
        if threads is not None and threads < 1:
            raise BackendError("threads must be at least 1")
        if max_models is not None and max_models < 1:
            raise BackendError("max_models must be at least 1")
        self.device_name = device or "auto"
        self.dtype_name = dtype
        self.attention = attention
        self.compile = compile
        self.optimize = bool(optimize)
        #: the knobs asked for (None: not given; ``optimize`` may fill them)
        self._asked: dict[str, Any] = {
            # an explicit off wins over the preset: kept as "off" until the knobs are made
            "compile": (compile_mode(compile) or "off") if compile is not None else None,
            "cuda_graphs": cuda_graphs,
            "channels_last": channels_last,
            "fused_qkv": fused_qkv,
            "sdpa": sdpa,
        }
        Knobs.of(**self._knobs_given(), compile_backend=compile_backend)  # checked now
        self.compile_backend = compile_backend
        #: the knobs in use, once the device is known
        self.knobs_in_use: Knobs | None = None
        self.threads = threads
        self.generator_device = generator_device
        self.local_files_only = local_files_only
        self.lora_dirs = tuple(str(d) for d in lora_dirs)
        self.max_models = max_models
        self.single_file_config = single_file_config
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # model name → loaded model
        self._infos: dict[str, ModelInfo] = {}
        self._sources: dict[str, str] = {}
        #: how many times a model was loaded, and a LoRA file (tests count them)
        self.model_loads = 0
        self.lora_loads = 0
        #: Hub models loaded from the cache alone (the Hub did not answer)
        self._cache_only: set[str] = set()
        self._torch: Any = None
        self._diffusers: Any = None
        self._device: Any = None
        self._dtype: Any = None

    # -- setup ---------------------------------------------------------------------------

    def _setup(self) -> None:
        """Import torch and diffusers and settle the device and dtype (once)."""
        if self._torch is not None:
            return
        torch, diffusers = _modules()
        dev = self.device_name
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        threads = self._thread_count(dev)
        if threads is not None:
            torch.set_num_threads(threads)
        _check_device(torch, dev)
        device = torch.device(dev)
        name = _DTYPES.get(self.dtype_name or "auto")
        if name is None:
            name = "float16" if device.type == "cuda" else "float32"
        if device.type == "cpu" and name == "float16":
            raise BackendError(
                "float16 needs a GPU: PyTorch on CPU cannot run Stable Diffusion in half precision. "
                "Use float32 (the default on CPU) or a CUDA device"
            )
        self.knobs_in_use = self._knobs_for(torch, device)
        self._torch, self._diffusers = torch, diffusers
        self._device, self._dtype = device, getattr(torch, name)

    def _knobs_given(self) -> dict[str, Any]:
        return {k: v for k, v in self._asked.items() if v is not None}

    def _knobs_for(self, torch: Any, device: Any) -> Knobs:
        """The knobs for ``device``: those given, the rest from the preset when
        ``optimize``, checked against the device."""
        chosen: dict[str, Any] = {}
        if self.optimize:
            capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
            chosen.update(preset(device.type, capability))
        chosen.update(self._knobs_given())
        return Knobs.of(**chosen, compile_backend=self.compile_backend).for_device(
            device.type, self.attention
        )

    def _thread_count(self, dev: str) -> int | None:
        """torch's CPU threads: as asked, else ``$SDP_TORCH_THREADS``, else half the cores
        off CUDA; None leaves torch's default."""
        threads = self.threads
        if threads is None and os.environ.get("SDP_TORCH_THREADS", "").strip():
            try:
                threads = max(1, int(os.environ["SDP_TORCH_THREADS"]))
            except ValueError:
                raise BackendError("SDP_TORCH_THREADS must be a whole number") from None
        if threads is None and not dev.startswith("cuda"):
            threads = max(1, (os.cpu_count() or 2) // 2)
        return threads

    @property
    def device(self) -> str:
        """The device pipelines run on (``"cpu"``, ``"cuda"``, …); settles it if needed."""
        self._setup()
        return str(self._device)

    @property
    def dtype(self) -> str:
        self._setup()
        return str(self._dtype).replace("torch.", "")

    @property
    def prefers_auto_batch(self) -> bool:
        """On a GPU, ``sdp run`` makes the largest batches that fit (``--batch auto``)
        unless told a batch size."""
        return self.device.startswith("cuda")

    def knobs(self) -> dict[str, Any]:
        """How this backend runs, for the run's record: device (and GPU), precision,
        attention, the speed knobs, and what each loaded model got."""
        self._setup()
        torch = self._torch
        out: dict[str, Any] = {"device": self.device, "dtype": self.dtype, "attention": self.attention}
        if self._device.type == "cuda":
            out["gpu"] = torch.cuda.get_device_name(self._device)
        out["optimize"] = self.optimize
        if self.knobs_in_use is not None:
            out.update(self.knobs_in_use.record())
        out["models"] = {m: dict(loaded.applied) for m, loaded in self._loaded.items()}
        return out

    def prepare(self, models: Sequence[str]) -> None:
        """Make sure every model a run needs can be loaded before any work, so a model
        that cannot be reached fails the run at once (``sdp run`` calls this). Every
        model is found (folder, file, or the Hub's ``model_index.json``) and, as many
        as may be kept loaded, loaded."""
        self._setup()  # torch and diffusers first, under the import lock (tiny models need them)
        for model in models:
            self._resolve(model)
        for model in list(models)[: self.max_models or len(models)]:
            self._model(model)

    def check_available(self, model: str) -> None:
        """Load ``model`` now (it stays loaded for :meth:`generate`), so a run fails
        before doing any work; raises :class:`BackendError` when it cannot."""
        self._model(model)

    def model_defaults(self, model: str) -> dict[str, Any]:
        """The settings a template leaves unset take these for ``model``: its family's
        size, steps, guidance and scheduler (empty when the family cannot be told yet)."""
        loaded = self._loaded.get(model)
        if loaded is not None:
            return dict(loaded.runner.info.defaults)
        try:
            return dict(self._resolve(model)[0].defaults)
        except BackendError:
            return {}

    def family(self, model: str) -> str:
        """The family of a model, in words (``SDXL``), once it is known."""
        loaded = self._loaded.get(model)
        return loaded.runner.family.label if loaded is not None else self._resolve(model)[0].label

    # -- finding and loading -------------------------------------------------------------

    def _resolve(self, model: str) -> tuple[ModelInfo, str]:
        """What ``model`` is (family, kind) and what to load it from, without loading
        weights; a model that cannot be found is a :class:`BackendError`."""
        found = self._infos.get(model)
        if found is not None:
            return found, self._sources[model]
        info, source = self._find(model)
        self._infos[model] = info
        self._sources[model] = source
        return info, source

    def _find(self, model: str) -> tuple[ModelInfo, str]:
        if is_tiny(model):
            try:
                path = tiny_model_path(model)
            except OSError as e:  # an unwritable or full cache folder
                raise BackendError(
                    f"cannot build the tiny model: {_first_line(e)}. Way out: set SDP_CACHE_DIR "
                    "to a writable folder"
                ) from e
            return detect_model(model), str(path)
        path = Path(model).expanduser()
        if path.is_file():
            return detect_single_file(model, path), str(path)
        if path.is_dir():
            return detect_folder(model, path), str(path)
        if _looks_like_path(model) or path.suffix.lower() in SINGLE_FILE_SUFFIXES:
            raise BackendError(
                f"cannot load model {model!r}: no such folder or file. Ways out: a folder in the "
                "diffusers layout (model_index.json), a single-file checkpoint (.safetensors), a "
                f"Hugging Face model id such as {DEFAULT_MODEL}, or --model tiny (no network needed)"
            )
        if "/" not in model:
            raise BackendError(_not_a_model(model))
        return self._find_on_hub(model), model

    def _find_on_hub(self, model: str) -> ModelInfo:
        """A Hub model's family from its ``model_index.json`` (from the cache, or
        downloaded: a small file). When the Hub does not answer at once, the model comes
        from the cache or not at all (no half a minute of retries)."""
        from huggingface_hub import hf_hub_download

        offline = self._offline()
        unreachable = None if offline else hub_unreachable(model)
        try:
            if unreachable is not None:
                try:
                    index = hf_hub_download(model, "model_index.json", local_files_only=True)
                except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), a bad id
                    raise HubUnreachable(unreachable) from None
                self._cache_only.add(model)
            else:
                index = hf_hub_download(model, "model_index.json", local_files_only=offline)
        except Exception as e:
            raise self._load_error(model, model, False, offline, e) from e
        return replace(detect_folder(model, Path(index).parent), kind="hub")

    def _offline(self) -> bool:
        return bool(self.local_files_only if self.local_files_only is not None else _offline())

    def _model(self, model: str) -> _Loaded:
        """The loaded model, loaded, moved and set up the first time (the least recently
        used one is dropped first when ``max_models`` are loaded)."""
        loaded = self._loaded.get(model)
        if loaded is not None:
            self._loaded.move_to_end(model)
            return loaded
        self._setup()
        info, source = self._resolve(model)
        while self.max_models is not None and len(self._loaded) >= self.max_models:
            self._loaded.popitem(last=False)
            self._free_memory()
        pipe = self._load(model, info, source)
        runner = runner_for(pipe, info)
        pipe = self._to_device(model, pipe)
        pipe.set_progress_bar_config(disable=True)
        self._set_attention(pipe)
        knobs = self.knobs_in_use if self.knobs_in_use is not None else Knobs()
        applied = apply_knobs(self._torch, pipe, knobs)
        ours = "ddim" if type(pipe.scheduler).__name__ == "DDIMScheduler" else ""
        loaded = _Loaded(pipe, runner, pipe.scheduler.config, ours, applied=applied)
        self._loaded[model] = loaded
        self.model_loads += 1
        return loaded

    def _load(self, model: str, info: ModelInfo, source: str) -> Any:
        """The pipeline, from a folder, the Hub or a single file; a failure becomes a
        :class:`BackendError` that says why."""
        if info.kind == "file":
            return self._load_single_file(model, info, source)
        if info.family is None and info.pipeline is not None:
            raise BackendError(
                f"model {model!r} is a {info.pipeline}; the diffusers backend runs text-to-image "
                f"models of these families: {families_summary()}"
            )
        from diffusers import DiffusionPipeline

        extra: dict[str, Any] = {}
        if info.family is None or info.family.key in ("sd1", "sd2"):
            extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        offline = self._offline()
        try:
            return DiffusionPipeline.from_pretrained(
                source,
                dtype=self._dtype,
                local_files_only=offline or info.kind != "hub" or model in self._cache_only,
                **extra,
            )
        except ImportError as e:  # a component class that needs a missing package
            raise BackendError(f"cannot load model {model!r}: {_first_line(e)}") from e
        except Exception as e:
            # OSError (not cached, offline, no such repo, missing files — huggingface_hub's
            # errors all derive from it), ValueError (not a valid id), or a corrupt file:
            # the user gets one line; the original stays chained for debugging
            raise self._load_error(model, source, info.kind != "hub", offline, e) from e

    def _load_single_file(self, model: str, info: ModelInfo, source: str) -> Any:
        """A single-file checkpoint through its family's ``from_single_file``, with the
        family's configuration files found locally (or a message naming them)."""
        from stable_discovery.backends.single_file import load_single_file

        return load_single_file(
            self._diffusers, model, info, source, self._dtype, self.single_file_config, self._offline()
        )

    def _to_device(self, model: str, pipe: Any) -> Any:
        try:
            return pipe.to(self._device)
        except RuntimeError as e:
            if "out of memory" in str(e).lower():
                raise BackendError(
                    f"model {model!r} does not fit in {self._device} memory; "
                    "free the GPU, use a smaller model, or --model tiny"
                ) from None
            raise

    def _set_attention(self, pipe: Any) -> None:
        """Put the attention implementation asked for into the UNet and the VAE. The
        transformer families (SD 3, Flux, PixArt) use PyTorch's fused attention through
        their own processors already; ``eager`` applies to UNet models only."""
        unet: Any = getattr(pipe, "unet", None)
        if self.attention in ("sdpa", "eager") and unet is None:
            if self.attention == "eager":
                raise BackendError(
                    "attention 'eager' applies to UNet models (SD 1.x/2.x, SDXL), "
                    f"not to a {type(pipe).__name__}"
                )
            return
        if self.attention == "sdpa":
            from diffusers.models.attention_processor import AttnProcessor2_0

            unet.set_attn_processor(AttnProcessor2_0())
            pipe.vae.set_attn_processor(AttnProcessor2_0())
        elif self.attention == "eager":
            from diffusers.models.attention_processor import AttnProcessor

            unet.set_attn_processor(AttnProcessor())
            pipe.vae.set_attn_processor(AttnProcessor())
        elif self.attention == "xformers":
            try:
                pipe.enable_xformers_memory_efficient_attention()
            except Exception as e:  # noqa: BLE001 - ModuleNotFoundError, or xformers without CUDA
                raise BackendError(f"attention 'xformers' is not available: {_first_line(e)}") from None

    def _load_error(
        self, model: str, source: str, local: bool, offline: bool, exc: BaseException
    ) -> BackendError:
        """A one-paragraph message for a failed ``from_pretrained``: the model, what was
        tried, the ways out."""
        cause = _root_cause(exc)
        reason = re.sub(r"^Error\s+", "", _first_line(cause)).rstrip(". ")
        if local:
            if is_tiny(model):
                fix = f"delete {source} so that it is rebuilt"
            else:
                fix = (
                    "point --model at a complete diffusers folder (model_index.json and one "
                    "folder per component, as save_pretrained writes), give a Hugging Face "
                    "model id, or use --model tiny"
                )
            return BackendError(f"cannot load model {model!r} from {source}: {reason}. Way out: {fix}")
        if isinstance(exc, ValueError) and "valid repo id" in str(exc):
            return BackendError(
                f"cannot load model {model!r}: it is neither an existing folder nor a valid "
                f"Hugging Face model id (owner/name, such as {DEFAULT_MODEL}). "
                "Ways out: --model tiny (no network needed) or a local diffusers folder"
            )
        name = type(cause).__name__
        cache = _hf_cache_dir()
        if offline or name == "OfflineModeIsEnabled":
            tried = (
                f"not in the local Hugging Face cache ({cache}), and offline mode (HF_HUB_OFFLINE) "
                "kept the Hub from being tried"
            )
        elif name in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError") or re.search(
            r"\b40[134]\b", reason
        ):
            tried = f"not in the local Hugging Face cache ({cache}), and the Hub answered: {reason}"
        else:
            tried = (
                f"not in the local Hugging Face cache ({cache}), and the Hub could not be reached ({reason})"
            )
        return BackendError(
            f"cannot load model {model!r}: {tried}. Ways out: --model tiny (random weights, "
            "no network needed); --model PATH (a local diffusers folder); or fill the cache on "
            f"a machine with network (`hf download {model}`; `huggingface-cli download` with "
            "older huggingface_hub) and run with HF_HUB_OFFLINE=1"
        )

    def _use_scheduler(self, model: str, loaded: _Loaded, name: str) -> None:
        """Switch the pipeline's scheduler to ours called ``name`` (from the model's config)."""
        if loaded.scheduler == name:
            return
        entry = SCHEDULER_CLASSES.get(name)
        if entry is None:
            raise BackendError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULER_CLASSES)}")
        cls_name, extra = entry
        cls = getattr(self._diffusers, cls_name)
        try:
            loaded.pipe.scheduler = cls.from_config(loaded.base_scheduler, **extra)
        except ImportError as e:  # LMS needs scipy; diffusers' placeholder raises on use
            raise BackendError(
                f"scheduler {name!r} needs a package that is missing: {_first_line(e)}"
            ) from None
        loaded.scheduler = name

    # -- LoRA ----------------------------------------------------------------------------

    def _library(self, model: str, loaded: _Loaded) -> LoraLibrary:
        if loaded.library is None:
            if is_tiny(model) and own_lora_names(model):
                tiny_loras_path(model)  # the tiny model's own adapters, built on first use
            loaded.library = LoraLibrary(lora_dirs_for(model, self.lora_dirs))
        return loaded.library

    def _use_loras(self, model: str, loaded: _Loaded, loras: tuple[tuple[str, float], ...]) -> None:
        """Apply the batch's LoRA set: each adapter is loaded the first time it is
        needed and kept; switching sets only changes which are active and their weights."""
        if loaded.active == loras:
            return
        pipe, family = loaded.pipe, loaded.runner.family
        if loras and not family.lora:
            raise BackendError(
                f"{family.label} models such as {model!r} take no LoRA in diffusers; remove the "
                f"<lora:…> tags ({', '.join(n for n, _w in loras)}) or compare with another model"
            )
        if loras and "denoiser" in loaded.applied.get("fused_qkv", ()):
            # a LoRA's layers sit on the separate projections: the fused ones would skip them
            unfuse(pipe)
            loaded.applied["fused_qkv"] = [p for p in loaded.applied["fused_qkv"] if p != "denoiser"]
            loaded.applied["unfused"] = "the denoiser's QKV projections, for LoRAs"
        for name, _weight in loras:
            if name not in loaded.adapters:
                self._load_lora(model, loaded, name)
        if loras:
            pipe.enable_lora()
            pipe.set_adapters([loaded.adapters[n] for n, _w in loras], adapter_weights=[w for _n, w in loras])
        elif loaded.adapters:
            pipe.disable_lora()
        loaded.active = loras

    def _load_lora(self, model: str, loaded: _Loaded, name: str) -> None:
        library = self._library(model, loaded)
        path = library.find(name)
        if path is None:
            raise BackendError(library.unknown_message(name))
        adapter = f"sdp_{len(loaded.adapters)}"  # peft adapter names must be identifiers
        try:
            loaded.pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter)
        except ImportError as e:
            raise BackendError(f"LoRA needs peft ({e}); pip install -e '.[diffusers]'") from None
        except (ValueError, KeyError, RuntimeError, OSError) as e:
            raise BackendError(
                f"cannot load LoRA {name!r} ({path}) into {model!r}: {_first_line(e)}. Is it a LoRA "
                f"for a {loaded.runner.family.label} model?"
            ) from e
        loaded.adapters[name] = adapter
        self.lora_loads += 1

    def lora_files(self, model: str, names: Sequence[str]) -> dict[str, Path]:
        """The files of the LoRAs ``names`` for ``model`` (for their hashes)."""
        library = self._library(model, self._model(model))
        return {n: p for n in names if (p := library.find(n)) is not None}

    # -- the protocol ---------------------------------------------------------------------

    def describe_model(self, model: str) -> str:
        """The model as PNG metadata records it: the id, the folder's or file's name, or
        ``tiny-sd2-v1`` (``tiny-sdxl-v1``, …)."""
        if is_tiny(model):
            return tiny_folder_name(model)
        path = Path(model).expanduser()
        if path.is_file():
            return path.stem
        if path.exists() or _looks_like_path(model):
            return path.resolve().name or model
        return model

    def generate(self, batch: Batch) -> Sequence[Image]:
        """One PIL image per sample of the batch, in order."""
        if not batch.samples:
            return []
        key = batch.key
        least = _MIN_STEPS.get(key.scheduler, 1)
        if key.steps < least:
            raise BackendError(
                f"scheduler {key.scheduler!r} needs at least {least} steps, got {key.steps}; "
                "use more steps or another scheduler"
            )
        loaded = self._model(key.model)
        prompts, negatives = _texts(batch)
        loaded.runner.check(key, negatives)
        self._use_scheduler(key.model, loaded, key.scheduler)
        self._use_loras(key.model, loaded, key.loras)
        torch = self._torch
        gen_device = "cpu" if self.generator_device == "cpu" else self._device
        generators = [torch.Generator(device=gen_device).manual_seed(int(s.seed)) for s in batch.samples]
        images: list[Any] = [None] * len(batch.samples)
        try:
            with torch.inference_mode():
                inputs = loaded.runner.inputs(prompts, negatives, key.weighting == "a1111")
                for positions, group in group_inputs(inputs):
                    out = loaded.pipe(
                        **group,
                        **loaded.runner.extra(),
                        width=key.width,
                        height=key.height,
                        num_inference_steps=key.steps,
                        guidance_scale=key.guidance,
                        generator=[generators[i] for i in positions],
                        output_type="pil",
                    )
                    for i, image in zip(positions, out.images, strict=True):
                        images[i] = image
        except torch.cuda.OutOfMemoryError:
            images.clear()
            torch.cuda.empty_cache()
            raise OutOfMemory(
                f"out of GPU memory generating {len(batch.samples)} images of "
                f"{key.width}x{key.height} with {key.model!r}; use a smaller --batch (or --batch auto)"
                + (", or --max-models 1" if len(self._loaded) > 1 else "")
            ) from None
        return images

    def close(self) -> None:
        """Drop the pipelines and give GPU memory back."""
        self._loaded.clear()
        self._free_memory()

    def _free_memory(self) -> None:
        if self._torch is not None:
            import gc

            gc.collect()
            if self._torch.cuda.is_available():
                self._torch.cuda.empty_cache()

    def __enter__(self) -> DiffusersBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _texts(batch: Batch) -> tuple[list[str], list[str]]:
    """The prompts as the text encoders read them (LoRA tags taken out) and the negative
    prompts (where a LoRA tag is refused: LoRAs apply to the whole image)."""
    prompts, negatives = [], []
    for s in batch.samples:
        prompts.append(split_lora_tags(s.prompt)[0])
        if LORA_TAG.search(s.negative):
            raise BackendError(
                f"sample {s.index}: a LoRA tag in the negative prompt ({s.negative!r}); LoRAs "
                "apply to the whole image: put the tag in the prompt"
            )
        negatives.append(s.negative)
    return prompts, negatives
