"""The ``diffusers`` backend: Stable Diffusion through Hugging Face diffusers and PyTorch.

* A model is a Hugging Face id (default ``stabilityai/stable-diffusion-2-1``), a local
  folder in the diffusers layout (``model_index.json`` and one folder per component), or
  ``tiny`` — a tiny random-weights pipeline built locally (:mod:`.tiny`). All three go
  through the same ``StableDiffusionPipeline.from_pretrained``; a pipeline is loaded once
  per model and kept until :meth:`DiffusersBackend.close`.
* The batch's scheduler name picks the scheduler class; its config is the model's own.
* fp16 on CUDA, fp32 on CPU; PyTorch's fused attention (SDPA) by default.
* One ``torch.Generator`` per image, seeded with the sample's seed and passed as a list,
  so an image depends only on its own sample, never on its batch.
* A model that cannot be loaded raises :class:`BackendError` with a short message that
  names the model, what was tried and the ways out; no traceback reaches the user.

torch and diffusers are imported when a backend first needs them, never at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stable_discovery.backends.base import BackendError, Batch
from stable_discovery.backends.quiet import quiet_libraries
from stable_discovery.backends.tiny import TINY_MODEL, TINY_VERSION, is_tiny, tiny_model_path

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


def _modules() -> tuple[Any, Any]:
    """(torch, diffusers), imported quietly, or a BackendError saying how to install them."""
    try:
        import torch
    except ImportError as e:
        raise BackendError(f"the diffusers backend needs PyTorch ({e}); {_INSTALL_HINT}") from None
    try:
        import diffusers
        import transformers  # noqa: F401 - imported only to check that it is installed
    except ImportError as e:
        raise BackendError(
            f"the diffusers backend needs diffusers and transformers ({e}); {_INSTALL_HINT}"
        ) from None
    quiet_libraries()
    return torch, diffusers


def _offline() -> bool:
    """Whether the Hugging Face offline variables ask for no network."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
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
        nxt = exc.__cause__ or exc.__context__
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


class DiffusersBackend:
    """Stable Diffusion pipelines through diffusers (see the module docstring).

    Arguments:
        device: ``"auto"`` (CUDA when torch sees a GPU, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        dtype: ``None``/``"auto"`` (float16 on CUDA, float32 elsewhere), ``"float16"``,
            ``"bfloat16"`` or ``"float32"``.
        attention: ``"sdpa"`` (PyTorch's fused scaled-dot-product attention, the
            default), ``"eager"`` (plain matmul + softmax), ``"xformers"`` or ``"default"``
            (whatever diffusers picks).
        compile: ``torch.compile`` the UNet (slow first batch of each shape, faster after;
            worth it for long runs on a GPU). ``True`` uses the default backend
            (inductor); a string names another ``torch.compile`` backend (``"eager"``,
            ``"aot_eager"``, ``"cudagraphs"``, …).
        threads: torch's intra-op CPU threads (``torch.set_num_threads``); ``None`` takes
            ``$SDP_TORCH_THREADS``, else, on a CPU, half the cores (at least one): all
            cores oversubscribe a machine that does anything else (bench/RESULTS.md);
            a GPU run leaves torch's default.
        generator_device: where the per-image random generators live: ``"device"`` (the
            pipeline's device, the default) or ``"cpu"`` (the same starting noise on every
            machine, a little slower on GPU for ancestral schedulers).
        local_files_only: never touch the network; ``None`` follows ``HF_HUB_OFFLINE``.
    """

    name = "diffusers"

    def __init__(
        self,
        device: str = "auto",
        dtype: str | None = None,
        attention: str = "sdpa",
        compile: bool | str = False,
        threads: int | None = None,
        generator_device: str = "device",
        local_files_only: bool | None = None,
    ) -> None:
        if attention not in _ATTENTION:
            raise BackendError(f"unknown attention {attention!r}; known: {', '.join(_ATTENTION)}")
        if dtype is not None and dtype != "auto" and dtype not in _DTYPES:
            raise BackendError(f"unknown dtype {dtype!r}; known: auto, float16, bfloat16, float32")
        if generator_device not in ("device", "cpu"):
            raise BackendError("generator_device must be 'device' or 'cpu'")
        if threads is not None and threads < 1:
            raise BackendError("threads must be at least 1")
        self.device_name = device
        self.dtype_name = dtype
        self.attention = attention
        self.compile = compile
        self.threads = threads
        self.generator_device = generator_device
        self.local_files_only = local_files_only
        self._pipes: dict[str, Any] = {}  # model name → pipeline
        self._base_scheduler: dict[str, Any] = {}  # model name → the model's own scheduler config
        self._scheduler_of: dict[str, str] = {}  # model name → our scheduler name in use
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
        self._torch, self._diffusers = torch, diffusers
        self._device, self._dtype = device, getattr(torch, name)

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

    def prepare(self, models: Sequence[str]) -> None:
        """Load every model a run needs before any work, so a model that cannot be
        reached fails the run at once (``sdp run`` calls this)."""
        for model in models:
            self.check_available(model)

    def check_available(self, model: str) -> None:
        """Load ``model`` now (it stays loaded for :meth:`generate`), so a run fails
        before doing any work; raises :class:`BackendError` when it cannot."""
        self._pipeline(model)

    # -- loading -------------------------------------------------------------------------

    def _source(self, model: str) -> tuple[str, bool]:
        """What to give ``from_pretrained`` for a model name, and whether it is local."""
        if is_tiny(model):
            try:
                return str(tiny_model_path()), True
            except OSError as e:  # an unwritable or full cache folder
                raise BackendError(
                    f"cannot build the tiny model: {_first_line(e)}. Way out: set SDP_CACHE_DIR "
                    "to a writable folder"
                ) from e
        path = Path(model).expanduser()
        if path.exists():
            if path.is_file():
                raise BackendError(
                    f"cannot load model {model!r}: it is a single file; the diffusers backend "
                    "loads a diffusers folder (model_index.json with one folder per component). "
                    "Convert a .ckpt/.safetensors checkpoint with diffusers' "
                    "scripts/convert_original_stable_diffusion_to_diffusers.py, use a Hugging "
                    "Face model id, or --model tiny"
                )
            return str(path), True
        if _looks_like_path(model):
            raise BackendError(
                f"cannot load model {model!r}: no such folder. Ways out: a folder in the "
                "diffusers layout (model_index.json), a Hugging Face model id such as "
                f"{DEFAULT_MODEL}, or --model tiny (no network needed)"
            )
        return model, False

    def _pipeline(self, model: str) -> Any:
        """The pipeline of ``model``, loaded, moved and set up the first time."""
        pipe = self._pipes.get(model)
        if pipe is not None:
            return pipe
        self._setup()
        pipe = self._to_device(model, self._load(model))
        pipe.set_progress_bar_config(disable=True)
        self._set_attention(pipe)
        if self.compile:
            self._compile_unet(pipe)
        self._pipes[model] = pipe
        self._base_scheduler[model] = pipe.scheduler.config
        self._scheduler_of[model] = "ddim" if type(pipe.scheduler).__name__ == "DDIMScheduler" else ""
        return pipe

    def _load(self, model: str) -> Any:
        """``from_pretrained``; a failure becomes a :class:`BackendError` that says why."""
        source, local = self._source(model)
        offline = self.local_files_only if self.local_files_only is not None else _offline()
        from diffusers import StableDiffusionPipeline

        try:
            return StableDiffusionPipeline.from_pretrained(
                source,
                dtype=self._dtype,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
                local_files_only=bool(offline),
            )
        except ImportError as e:  # a component class that needs a missing package
            raise BackendError(f"cannot load model {model!r}: {_first_line(e)}") from e
        except Exception as e:
            # OSError (not cached, offline, no such repo, missing files — huggingface_hub's
            # errors all derive from it), ValueError (not a valid id), or a corrupt file:
            # the user gets one line; the original stays chained for debugging
            raise self._load_error(model, source, local, bool(offline), e) from e

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
        """Put the attention implementation asked for into the UNet and the VAE."""
        if self.attention == "sdpa":
            from diffusers.models.attention_processor import AttnProcessor2_0

            pipe.unet.set_attn_processor(AttnProcessor2_0())
            pipe.vae.set_attn_processor(AttnProcessor2_0())
        elif self.attention == "eager":
            from diffusers.models.attention_processor import AttnProcessor

            pipe.unet.set_attn_processor(AttnProcessor())
            pipe.vae.set_attn_processor(AttnProcessor())
        elif self.attention == "xformers":
            try:
                pipe.enable_xformers_memory_efficient_attention()
            except Exception as e:  # noqa: BLE001 - ModuleNotFoundError, or xformers without CUDA
                raise BackendError(f"attention 'xformers' is not available: {_first_line(e)}") from None

    def _compile_unet(self, pipe: Any) -> None:
        """``torch.compile`` the UNet (channels-last on CUDA)."""
        torch = self._torch
        if self._device.type == "cuda":
            pipe.unet.to(memory_format=torch.channels_last)
        # static shapes: a run has one or two batch shapes (full and last partial
        # batch); each gets its own specialised graph instead of a slower dynamic one
        backend = self.compile if isinstance(self.compile, str) else "inductor"
        pipe.unet = torch.compile(pipe.unet, backend=backend, dynamic=False)

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
            return BackendError(
                f"cannot load model {model!r} from the folder {source}: {reason}. Way out: {fix}"
            )
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

    def _use_scheduler(self, model: str, pipe: Any, name: str) -> None:
        """Switch the pipeline's scheduler to ours called ``name`` (from the model's config)."""
        if self._scheduler_of.get(model) == name:
            return
        entry = SCHEDULER_CLASSES.get(name)
        if entry is None:
            raise BackendError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULER_CLASSES)}")
        cls_name, extra = entry
        cls = getattr(self._diffusers, cls_name)
        try:
            pipe.scheduler = cls.from_config(self._base_scheduler[model], **extra)
        except ImportError as e:  # LMS needs scipy; diffusers' placeholder raises on use
            raise BackendError(
                f"scheduler {name!r} needs a package that is missing: {_first_line(e)}"
            ) from None
        self._scheduler_of[model] = name

    # -- the protocol ---------------------------------------------------------------------

    def describe_model(self, model: str) -> str:
        """The model as PNG metadata records it: the id, the folder's name, or
        ``tiny-sd2-v1``."""
        if is_tiny(model):
            return f"{TINY_MODEL}-sd2-{TINY_VERSION}"
        path = Path(model).expanduser()
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
        pipe = self._pipeline(key.model)
        self._use_scheduler(key.model, pipe, key.scheduler)
        torch = self._torch
        gen_device = "cpu" if self.generator_device == "cpu" else self._device
        generators = [torch.Generator(device=gen_device).manual_seed(int(s.seed)) for s in batch.samples]
        try:
            with torch.inference_mode():
                out = pipe(
                    prompt=[s.prompt for s in batch.samples],
                    negative_prompt=[s.negative for s in batch.samples],
                    width=key.width,
                    height=key.height,
                    num_inference_steps=key.steps,
                    guidance_scale=key.guidance,
                    generator=generators,
                    output_type="pil",
                )
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise BackendError(
                f"out of GPU memory generating {len(batch.samples)} images of "
                f"{key.width}x{key.height} with {key.model!r}; use a smaller --batch"
            ) from None
        images = list(out.images)
        if len(images) != len(batch.samples):  # pragma: no cover - diffusers contract
            raise BackendError(f"the pipeline returned {len(images)} images for {len(batch.samples)} prompts")
        return images

    def close(self) -> None:
        """Drop the pipelines and give GPU memory back."""
        self._pipes.clear()
        self._base_scheduler.clear()
        self._scheduler_of.clear()
        if self._torch is not None:
            import gc

            gc.collect()
            if self._torch.cuda.is_available():
                self._torch.cuda.empty_cache()

    def __enter__(self) -> DiffusersBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
