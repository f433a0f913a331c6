"""The diffusers backend's speed knobs on the tiny model (CPU, float32): each one gives
the images of the unoptimised path within the documented tolerance
(docs/performance.md), is recorded, and is refused where it cannot apply, saying why;
``--optimize``'s preset; fused projections step aside for LoRAs; running out of GPU
memory is an :class:`OutOfMemory`. What only a GPU can show (speed, flash/cuDNN
kernels, CUDA graphs, float16) is measured by ``bench/gpu_sd21.py``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

import numpy as np

from stable_discovery.backends.base import BackendError, Batch, GenerationKey, OutOfMemory
from stable_discovery.backends.diffusers_backend import DiffusersBackend
from stable_discovery.backends.speed import Knobs, preset
from stable_discovery.cli.main import main
from stable_discovery.language.loras import lora_key
from stable_discovery.sampling.sample import Sample
from stable_discovery.store.database import Store

#: The tolerance docs/performance.md gives for knobs that keep the precision: the
#: largest difference of any pixel channel, in levels of 255, on the tiny model.
SAME_PRECISION_MAX = 2
#: bfloat16 against float32: the mean absolute difference per channel.
BF16_MEAN = 4.0


def batch(prompt: str = "a cat in the snow", n: int = 3, model: str = "tiny") -> Batch:
    key = GenerationKey(model, 64, 64, 6, 7.5, "ddim", lora_key(prompt), "none")
    return Batch(key, tuple(Sample(i, prompt, "blurry", {}, 40 + i, {}) for i in range(n)))


def images(**knobs: Any) -> tuple[list[np.ndarray], dict[str, Any]]:
    backend = DiffusersBackend(device="cpu", threads=1, **knobs)
    try:
        made = backend.generate(batch())
        return [np.asarray(im, dtype=np.int16) for im in made], backend.knobs()
    finally:
        backend.close()


@pytest.fixture(scope="module")
def baseline(cache_dir: Path) -> list[np.ndarray]:
    return images()[0]


@pytest.mark.parametrize(
    "knobs, applied",
    [
        ({"channels_last": True}, {"channels_last": True}),
        ({"fused_qkv": True}, {"fused_qkv": ["denoiser", "vae"]}),
        ({"sdpa": "math"}, {"sdpa": "math"}),
        ({"sdpa": "flash"}, {"sdpa": "flash"}),
        ({"compile": True, "compile_backend": "eager"}, {"compile": {"mode": "default", "backend": "eager"}}),
        ({"optimize": True, "fused_qkv": True}, {"fused_qkv": ["denoiser", "vae"]}),
    ],
    ids=["channels-last", "fused-qkv", "sdpa-math", "sdpa-flash", "compile-eager", "optimize"],
)
def test_each_knob_keeps_the_images_within_tolerance_and_is_recorded(
    baseline: list[np.ndarray], knobs: dict[str, Any], applied: dict[str, Any]
) -> None:
    made, record = images(**knobs)
    worst = max(int(np.abs(a - b).max()) for a, b in zip(made, baseline, strict=True))
    assert worst <= SAME_PRECISION_MAX, f"{knobs}: a pixel moved by {worst} levels"
    got = record["models"]["tiny"]
    for name, value in applied.items():
        assert got[name] == value or (isinstance(value, dict) and value.items() <= got[name].items())
    for name, value in knobs.items():
        if name == "compile":
            assert record["compile"] == "default"
        elif name != "optimize":
            assert record[name] == value
    assert record["device"] == "cpu" and record["dtype"] == "float32"


def test_the_attention_kernel_is_chosen_for_the_denoiser_alone(cache_dir: Path) -> None:
    """--sdpa picks the UNet's kernel; the VAE (whose one head of 512 channels flash and
    cuDNN cannot take on SD 2.1) and the text encoder keep PyTorch's choice."""
    import torch

    seen: dict[str, bool] = {}

    def note(part: str) -> Any:
        def hook(*_args: Any) -> None:
            seen[part] = torch.backends.cuda.math_sdp_enabled()

        return hook

    backend = DiffusersBackend(device="cpu", threads=1, sdpa="flash")
    try:
        pipe = backend._model("tiny").pipe
        hooks = [
            pipe.unet.down_blocks[0].register_forward_pre_hook(note("unet")),
            pipe.vae.decoder.register_forward_pre_hook(note("vae")),
            pipe.text_encoder.register_forward_pre_hook(note("text")),
        ]
        backend.generate(batch(n=1))
        for h in hooks:
            h.remove()
    finally:
        backend.close()
    assert seen == {"unet": False, "vae": True, "text": True}


def test_bfloat16_runs_on_a_cpu_within_its_tolerance(baseline: list[np.ndarray]) -> None:
    made, record = images(dtype="bfloat16")
    assert record["dtype"] == "bfloat16"
    mean = float(np.mean([np.abs(a - b).mean() for a, b in zip(made, baseline, strict=True)]))
    assert 0 < mean <= BF16_MEAN


def test_fused_projections_step_aside_for_a_lora(cache_dir: Path) -> None:
    def lora_image(**knobs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        backend = DiffusersBackend(device="cpu", threads=1, **knobs)
        try:
            backend.generate(batch(n=1))  # fused first, without a LoRA
            made = backend.generate(batch("a cat in the snow <lora:tiny-detail:0.8>", n=1))
            return np.asarray(made[0], dtype=np.int16), backend.knobs()["models"]["tiny"]
        finally:
            backend.close()

    plain, _ = lora_image()
    fused, record = lora_image(fused_qkv=True)
    assert int(np.abs(plain - fused).max()) <= SAME_PRECISION_MAX  # the LoRA is applied
    assert record["fused_qkv"] == ["vae"] and "LoRA" in record["unfused"]


@pytest.mark.parametrize(
    "knobs, message",
    [
        ({"cuda_graphs": True}, "CUDA graphs need a CUDA device, not cpu"),
        ({"sdpa": "cudnn"}, "the cudnn attention kernel needs a CUDA device"),
        ({"sdpa": "efficient"}, "the efficient attention kernel needs a CUDA device"),
        ({"sdpa": "flash", "attention": "eager"}, "chooses a kernel of PyTorch's fused attention"),
        (
            {"fused_qkv": True, "attention": "eager"},
            "fused QKV projections run with PyTorch's fused attention",
        ),
    ],
)
def test_knobs_that_cannot_apply_are_refused_saying_why(
    cache_dir: Path, knobs: dict[str, Any], message: str
) -> None:
    backend = DiffusersBackend(device="cpu", **knobs)
    with pytest.raises(BackendError, match=message):
        backend.generate(batch(n=1))


def test_unknown_knob_values_are_refused_at_once() -> None:
    with pytest.raises(BackendError, match="unknown compile mode 'fast'"):
        DiffusersBackend(compile="fast")
    with pytest.raises(BackendError, match="unknown attention kernel 'quick'"):
        DiffusersBackend(sdpa="quick")


def test_the_preset_picks_knobs_for_the_device() -> None:
    assert preset("cuda", (9, 0)) == {"compile": "default"}
    assert preset("cuda", (6, 1)) == {}
    assert preset("cpu", None) == {}  # no knob measured faster on a CPU
    # explicit knobs win over the preset; CUDA graphs imply compile
    knobs = Knobs.of(compile="max-autotune", cuda_graphs=True).for_device("cuda", "sdpa")
    assert knobs.compile_options() == {"backend": "inductor", "dynamic": False, "mode": "max-autotune"}
    knobs = Knobs.of(cuda_graphs=True).for_device("cuda", "sdpa")
    assert knobs.compile == "default" and knobs.compile_options()["mode"] == "reduce-overhead"
    assert Knobs.of(compile="max-autotune").compile_options()["mode"] == "max-autotune-no-cudagraphs"
    assert "mode" not in Knobs.of(compile=True, compile_backend="eager").compile_options()
    backend = DiffusersBackend(device="cpu", optimize=True, compile="off")
    assert backend.knobs()["optimize"] is True and backend.knobs()["compile"] is None
    assert backend.knobs()["fused_qkv"] is False


def test_running_out_of_gpu_memory_is_an_out_of_memory_error(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    backend = DiffusersBackend(device="cpu", threads=1)
    try:
        backend.generate(batch(n=1))
        loaded = backend._loaded["tiny"]

        class Pipe:
            def __call__(self, **_: Any) -> Any:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

        monkeypatch.setattr(loaded, "pipe", Pipe())
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
        with pytest.raises(
            OutOfMemory, match=r"out of GPU memory generating 3 images of 64x64 .*--batch auto"
        ):
            backend.generate(batch())
    finally:
        backend.close()
    assert not backend.prefers_auto_batch  # a CPU: fixed batches by default


def test_sdp_run_records_the_knobs(
    cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmpl = tmp_path / "knobs.sdp"
    tmpl.write_text("prompt = a {cat|dog}\n@size = 64x64\n@steps = 4\n@count = 4\n@optimize = on\n")
    ws = tmp_path / "ws"
    argv = ["run", str(tmpl), "--model", "tiny", "--workspace", str(ws), "--channels-last", "--sdpa", "math"]
    argv += ["--fused-qkv"]
    assert main(argv) == 0
    capsys.readouterr()
    with Store(ws) as store:
        (run,) = store.runs_of(store.require("knobs"))
    knobs = run["settings"]["knobs"]
    assert knobs["optimize"] is True and knobs["channels_last"] is True and knobs["sdpa"] == "math"
    assert knobs["fused_qkv"] is True and knobs["models"]["tiny"]["fused_qkv"] == ["denoiser", "vae"]
    assert run["settings"]["backend_options"]["optimize"] is True
    assert main(["runs", "knobs", "--workspace", str(ws)]) == 0
    assert "cpu, float32, channels-last, fused-qkv, sdpa math" in capsys.readouterr().out


def test_sdp_run_in_a_fresh_process_loads_while_it_imports(cache_dir: Path, tmp_path: Path) -> None:
    """The warm start imports torch and diffusers on one thread while the backend's loader
    asks for them on another: diffusers must come out whole (its lazy names, such as the
    Euler scheduler of an SDXL model, resolve)."""
    import subprocess
    import sys

    from tests.helpers import REPO

    tmpl = tmp_path / "one.sdp"
    tmpl.write_text("prompt = a fox\n@model = tiny-sdxl\n@size = 64x64\n@steps = 2\n@count = 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "stable_discovery", "run", str(tmpl), "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "first image" in done.stderr and (tmp_path / "ws" / "one" / "00000.png").is_file()
