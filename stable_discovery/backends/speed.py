"""The diffusers backend's speed knobs: what makes the same images faster, and the
``--optimize`` preset that picks them for the device at hand.

=================  =========================================================================
knob               what it does
=================  =========================================================================
``compile``        ``torch.compile`` the denoiser (UNet or transformer): ``default`` or
                   ``max-autotune`` (inductor tries kernels for every shape: minutes more
                   to compile, a little faster after); each batch shape compiles once
``compile_backend`` the ``torch.compile`` backend (``inductor``; ``eager``/``aot_eager``
                   trace without generating code, to check the path on a CPU)
``cuda_graphs``    replay the compiled denoiser as CUDA graphs (inductor's
                   ``reduce-overhead``): pays where kernel launches, not arithmetic,
                   take the time (small images, small batches); CUDA only
``channels_last``  UNet and VAE weights and activations in channels-last memory format
                   (off unless asked: slower on an H100 with SD 2.1, eager and compiled)
``fused_qkv``      one matrix multiply for an attention's query, key and value
                   projections (key and value for cross-attention), in the UNet or
                   transformer and the VAE; turned off for a model once it uses a LoRA,
                   whose layers sit on the separate projections
``sdpa``           which kernel PyTorch's fused attention uses in the denoiser: ``auto``
                   (PyTorch picks), ``flash``, ``cudnn``, ``efficient`` (CUDA) or
                   ``math``; the VAE and the text encoders keep PyTorch's choice (the
                   VAE's one attention head of 512 channels is beyond flash and cuDNN)
=================  =========================================================================

Precision (``dtype``: float16, bfloat16, float32) is the backend's own argument. None
of the knobs changes which image a sample gets: they reorder floating-point arithmetic,
so pixels move by a few levels at most (``docs/performance.md`` gives the tolerance
and the measured differences).

torch is imported by the backend; the functions here get it as an argument.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from stable_discovery.backends.base import BackendError

__all__ = [
    "COMPILE_MODES",
    "SDPA_KERNELS",
    "Knobs",
    "preset",
    "apply_knobs",
    "attention_kernel",
    "compile_mode",
    "unfuse",
]

#: ``--compile`` modes.
COMPILE_MODES = ("default", "max-autotune")

#: ``--sdpa`` kernels, and those that exist only on CUDA.
SDPA_KERNELS = ("auto", "flash", "cudnn", "efficient", "math")
_CUDA_ONLY_KERNELS = ("cudnn", "efficient")

#: torch's names of the kernels.
_SDPA_NAMES = {
    "flash": "FLASH_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "math": "MATH",
}

_TRUE = {True, "1", "true", "yes", "on"}
_FALSE = {False, None, "", "0", "false", "no", "off"}


@dataclass(frozen=True)
class Knobs:
    """The speed knobs of a backend (see the module docstring); ``None`` for
    ``channels_last`` means off."""

    compile: str | None = None
    compile_backend: str = "inductor"
    cuda_graphs: bool = False
    channels_last: bool | None = None
    fused_qkv: bool = False
    sdpa: str = "auto"

    @classmethod
    def of(cls, compile: bool | str | None = None, **knobs: Any) -> Knobs:
        """Knobs from the backend's arguments, checked: ``compile`` may be a bool, a
        mode, or ``"off"``."""
        return cls(compile=compile_mode(compile), **knobs).checked()

    def checked(self) -> Knobs:
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise BackendError(
                f"unknown compile mode {self.compile!r}; known: {', '.join(COMPILE_MODES)} (or off)"
            )
        if self.sdpa not in SDPA_KERNELS:
            raise BackendError(f"unknown attention kernel {self.sdpa!r}; known: {', '.join(SDPA_KERNELS)}")
        if not self.compile_backend or not isinstance(self.compile_backend, str):
            raise BackendError("compile_backend must name a torch.compile backend, such as inductor")
        return self

    def for_device(self, device_type: str, attention: str) -> Knobs:
        """These knobs on ``device_type`` with ``attention``: a :class:`BackendError`
        for one that cannot apply there, saying why; ``cuda_graphs`` implies
        ``compile``."""
        cuda = device_type == "cuda"
        if self.cuda_graphs and not cuda:
            raise BackendError(f"CUDA graphs need a CUDA device, not {device_type}: leave out --cuda-graphs")
        if self.sdpa in _CUDA_ONLY_KERNELS and not cuda:
            raise BackendError(
                f"the {self.sdpa} attention kernel needs a CUDA device, not {device_type}: "
                "use --sdpa auto, flash or math"
            )
        if self.sdpa != "auto" and attention != "sdpa":
            raise BackendError(
                f"--sdpa {self.sdpa} chooses a kernel of PyTorch's fused attention (attention sdpa)"
            )
        if self.fused_qkv and attention not in ("sdpa", "default"):
            raise BackendError(f"fused QKV projections run with PyTorch's fused attention, not {attention!r}")
        knobs = self
        if knobs.cuda_graphs and knobs.compile is None:
            knobs = replace(knobs, compile="default")
        return knobs

    def compile_options(self) -> dict[str, Any]:
        """``torch.compile``'s arguments for these knobs (inductor's ``mode`` says
        whether CUDA graphs are used)."""
        options: dict[str, Any] = {"backend": self.compile_backend, "dynamic": False}
        if self.compile_backend == "inductor":
            if self.compile == "max-autotune":
                options["mode"] = "max-autotune" if self.cuda_graphs else "max-autotune-no-cudagraphs"
            elif self.cuda_graphs:
                options["mode"] = "reduce-overhead"
        return options

    def record(self) -> dict[str, Any]:
        """The knobs as the run's record keeps them."""
        return asdict(self)


def compile_mode(value: bool | str | None) -> str | None:
    """``--compile``'s value as a mode (``None``: off)."""
    if isinstance(value, str):
        value = value.strip().lower()
    if value in _FALSE:
        return None
    if value in _TRUE:
        return "default"
    return str(value)


def preset(device_type: str, capability: tuple[int, int] | None) -> dict[str, Any]:
    """``--optimize``: the knobs for a device. On an NVIDIA GPU of compute capability
    7.0 or more (Volta and later: tensor cores): ``torch.compile`` (default mode), the
    attention kernel left to PyTorch. Channels-last and fused QKV projections stay off
    (each measured slower on an H100 with SD 2.1, eager and compiled:
    ``bench/RESULTS.md``), and so do CUDA graphs (no faster at the batch sizes
    ``--batch auto`` finds: the arithmetic, not launching kernels, takes the time).
    Elsewhere nothing: on a CPU none of the knobs measured faster
    (``docs/performance.md``), and compiling takes minutes there."""
    if device_type == "cuda" and capability is not None and capability >= (7, 0):
        return {"compile": "default"}
    return {}


def apply_knobs(torch: Any, pipe: Any, knobs: Knobs) -> dict[str, Any]:
    """Apply the knobs to a loaded pipeline (attention processors already set); what
    was applied, for the run's record."""
    applied: dict[str, Any] = {}
    denoiser_attr = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    denoiser = getattr(pipe, denoiser_attr, None)
    if knobs.fused_qkv:
        applied["fused_qkv"] = _fuse(pipe, denoiser)
    if knobs.channels_last and denoiser_attr == "unet" and denoiser is not None:
        denoiser.to(memory_format=torch.channels_last)
        vae = getattr(pipe, "vae", None)
        if vae is not None:
            vae.to(memory_format=torch.channels_last)
        applied["channels_last"] = True
    if knobs.sdpa != "auto" and denoiser is not None:
        _scope_attention_kernel(torch, denoiser, knobs.sdpa)
        applied["sdpa"] = knobs.sdpa
    if knobs.compile is not None and denoiser is not None:
        setattr(pipe, denoiser_attr, torch.compile(denoiser, **knobs.compile_options()))
        applied["compile"] = {"mode": knobs.compile, **knobs.compile_options()}
    return applied


def _fuse(pipe: Any, denoiser: Any) -> list[str]:
    """Fuse the QKV projections of the denoiser and the VAE where they can be; the
    parts fused."""
    fused = []
    if denoiser is not None and hasattr(denoiser, "fuse_qkv_projections"):
        try:
            denoiser.fuse_qkv_projections()
            fused.append("denoiser")
        except ValueError:  # models with added KV projections (diffusers refuses them)
            pass
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "fuse_qkv_projections"):
        try:
            vae.fuse_qkv_projections()
            fused.append("vae")
        except ValueError:
            pass
    if fused and hasattr(pipe, "fusing_unet"):
        pipe.fusing_unet = "denoiser" in fused
        pipe.fusing_vae = "vae" in fused
    return fused


def unfuse(pipe: Any) -> bool:
    """Undo the denoiser's fused QKV projections (its LoRA layers sit on the separate
    ones); whether there was anything to undo."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    denoiser = getattr(denoiser, "_orig_mod", denoiser)  # a compiled one
    if denoiser is None or not hasattr(denoiser, "unfuse_qkv_projections"):
        return False
    denoiser.unfuse_qkv_projections()
    return True


def _scope_attention_kernel(torch: Any, module: Any, kernel: str) -> None:
    """Make ``module``'s forward pass run with the attention ``kernel`` (and nothing
    outside it: the VAE and the text encoders keep PyTorch's choice)."""
    forward = module.forward

    @functools.wraps(forward)
    def scoped(*args: Any, **kwargs: Any) -> Any:
        with attention_kernel(torch, kernel):
            return forward(*args, **kwargs)

    module.forward = scoped


@contextlib.contextmanager
def attention_kernel(torch: Any, kernel: str) -> Iterator[None]:
    """Within the block, PyTorch's fused attention uses ``kernel`` (``auto``: its own
    choice)."""
    if kernel == "auto":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([getattr(SDPBackend, _SDPA_NAMES[kernel])]):
        yield
