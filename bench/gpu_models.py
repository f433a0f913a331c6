"""SD 2.1 and SDXL on a GPU: plain prompts, A1111 prompt weighting, a LoRA, LoRA switching.

Both architectures are built with random weights at their published sizes (SD 2.1's
configs come from ``bench/gpu_sd21.py``; SDXL base 1.0's are hard-coded below), saved
with ``save_pretrained`` and loaded by the project's ``DiffusersBackend`` through the
ordinary path, at their native sizes (768 and 1024 px), float16, PyTorch's fused
attention. Random weights cost what the real ones cost, so the timings stand for the
real models (the images are noise). Two random rank-32 LoRAs per model (on every
attention projection of the UNet, as typical LoRAs are) are saved with diffusers'
``save_lora_weights`` and loaded by ``<lora:NAME:WEIGHT>`` tags.

Rows per model, images/s end to end (best of ``--repeat`` after a warm-up batch):

1. ``text, weighting off``: the prompt goes to the pipeline as text (``@weighting = none``).
2. ``A1111 weighting``: prompts with ``(word:1.3)``, ``[word]`` and a ``BREAK``, whose
   embeddings compel builds (one text-encoder pass per prompt and chunk).
3. ``+ LoRA``: the same with ``<lora:a:0.8>`` (the LoRA layers run at every step).
4. ``LoRA switching``: batches alternating between ``<lora:a:0.8>`` and
   ``<lora:b:0.6>`` (the planner groups by LoRA set; each switch is a ``set_adapters``).

Then the cost of LoRA handling alone: loading a LoRA file the first time, and one switch
between loaded adapters (``set_adapters``, synchronised), averaged.

Usage (one command; about 5 minutes on an H100, mostly building and saving SDXL)::

    python bench/gpu_models.py --out bench/results/gpu_models.md
    python bench/gpu_models.py --cpu-smoke        # CPU check: scaled-down models, 64 px, 2 steps

The GPU machine has PyTorch, transformers, accelerate and peft but not diffusers, compel
or lark: with ``--wheels DIR`` the script installs the wheels found there (``pip install
--no-deps``) when those imports fail. Fill the folder on a machine with network::

    pip download --no-deps -d bench/wheels diffusers==0.42.1 compel==2.5.1 lark pluggy
"""

from __future__ import annotations

import argparse
import gc
import glob
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# SDXL base 1.0's published configs (stabilityai/stable-diffusion-xl-base-1.0)
SDXL_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "transformer_layers_per_block": (1, 2, 10),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
}
SDXL_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
}
SDXL_TEXT_1 = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "max_position_embeddings": 77,
}
SDXL_TEXT_2 = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "projection_dim": 1280,
    "hidden_act": "gelu",
    "max_position_embeddings": 77,
}
# scaled-down shapes for --cpu-smoke (same block structure)
SMOKE_SDXL_UNET = {
    **SDXL_UNET,
    "block_out_channels": (32, 64, 64),
    "attention_head_dim": (2, 4, 4),
    "transformer_layers_per_block": (1, 1, 2),
    "cross_attention_dim": 64,
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 6 * 8 + 32,
    "layers_per_block": 1,
}
SMOKE_SDXL_VAE = {
    **SDXL_VAE,
    "block_out_channels": (32, 32, 32, 32),
    "layers_per_block": 1,
    "sample_size": 64,
}
SMOKE_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 32,
    "hidden_act": "gelu",
    "max_position_embeddings": 77,
}

PLAIN = ("a red fox in the snow, golden hour", "an old lighthouse on a cliff, stormy sea", "a bowl of ramen")
WEIGHTED = (
    "a (red fox:1.3) in the snow, [golden hour]",
    "an old ((lighthouse)) on a cliff BREAK stormy sea, (dramatic sky:1.2)",
    "a bowl of (ramen:1.4), steam, [chopsticks]",
)


def log(msg: str) -> None:
    print(msg, flush=True)


def ensure_packages(wheels: Path | None) -> None:
    """Install the carried wheels when diffusers, compel or lark do not import."""
    missing = []
    for name in ("diffusers", "compel", "lark", "pluggy", "peft"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if not missing:
        return
    found = sorted(glob.glob(str(wheels / "*.whl"))) if wheels is not None else []
    if not found:
        raise SystemExit(f"error: {', '.join(missing)} not installed; give --wheels DIR (see the docstring)")
    log(f"installing {', '.join(Path(w).name for w in found)} (missing: {', '.join(missing)})")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", *found], check=True)


def build_sdxl(folder: Path, smoke: bool, device: str) -> None:
    """SDXL base's architecture with random weights, saved (fp16 on GPU)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from stable_discovery.backends.tiny import write_tokenizer_files

    with tempfile.TemporaryDirectory() as tok_dir:
        write_tokenizer_files(Path(tok_dir))  # a byte-level stand-in for CLIP's BPE
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "vocab_size": len(tokenizer),
    }
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**(SMOKE_SDXL_UNET if smoke else SDXL_UNET))
        vae = AutoencoderKL(**(SMOKE_SDXL_VAE if smoke else SDXL_VAE))
        text = CLIPTextModel(CLIPTextConfig(**(SMOKE_TEXT if smoke else SDXL_TEXT_1), **ids))
        text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**(SMOKE_TEXT if smoke else SDXL_TEXT_2), **ids))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text,
        text_encoder_2=text_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    if device != "cpu":
        pipe.to(torch.float16)
    pipe.save_pretrained(folder, safe_serialization=True)
    log(f"built SDXL architecture: UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.0f}M parameters")
    del pipe, unet, vae, text, text_2
    gc.collect()


def build_loras(model_dir: Path, lora_dir: Path, device: str, rank: int) -> None:
    """Two random LoRAs (``a``, ``b``) on the UNet's attention projections."""
    import torch
    from diffusers import DiffusionPipeline

    from stable_discovery.backends.tiny import save_random_lora

    for i, name in enumerate(("a", "b")):
        torch.manual_seed(10 + i)
        pipe: Any = DiffusionPipeline.from_pretrained(model_dir)
        save_random_lora(pipe, lora_dir, name, rank=rank, scale=0.05)
        del pipe
        gc.collect()


def samples(
    prompts: Sequence[str],
    count: int,
    size: int,
    steps: int,
    model: str,
    weighting: str,
    loras: Sequence[str],
) -> list[Any]:
    from stable_discovery.sampling.sample import Sample

    settings = {
        "model": model,
        "width": size,
        "height": size,
        "steps": steps,
        "guidance": 7.0,
        "scheduler": "euler",
        "weighting": weighting,
    }
    return [
        Sample(
            i,
            f"{prompts[i % len(prompts)]} {loras[i % len(loras)] if loras else ''}".strip(),
            "blurry, low quality",
            dict(settings),
            1000 + i,
            {},
        )
        for i in range(count)
    ]


def timed(backend: Any, batch_samples: list[Any], batch: int, repeat: int, sync: Any) -> float:
    """Best seconds for the samples in planner batches, after a warm-up batch of each
    generation key (LoRA set) the samples use: loading a LoRA is measured apart."""
    from stable_discovery.run.planner import plan

    seen = set()
    for b in plan(batch_samples, batch):
        if b.key not in seen:
            seen.add(b.key)
            backend.generate(b)
    best = float("inf")
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        for b in plan(batch_samples, batch, max_buffered=batch):
            backend.generate(b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def lora_costs(backend: Any, model: str, sync: Any) -> tuple[float, float]:
    """(seconds to load a LoRA file the first time, seconds per switch between loaded sets)."""
    loaded = backend._model(model)
    loaded.adapters.clear()
    loaded.active = None
    loaded.pipe.unload_lora_weights()
    sync()
    t0 = time.perf_counter()
    backend._use_loras(model, loaded, (("a", 0.8),))
    sync()
    first = time.perf_counter() - t0
    backend._use_loras(model, loaded, (("b", 0.6),))
    n = 10
    sync()
    t0 = time.perf_counter()
    for i in range(n):
        backend._use_loras(model, loaded, (("a", 0.8),) if i % 2 == 0 else (("b", 0.6),))
    sync()
    return first, (time.perf_counter() - t0) / n


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="CPU check: scaled-down models, 64 px, 2 steps")
    ap.add_argument("--steps", type=int, help="denoising steps (default 20; smoke 2)")
    ap.add_argument("--batch", type=int, help="images per call (default 4; smoke 2)")
    ap.add_argument("--count", type=int, help="images per row (default 8; smoke 4)")
    ap.add_argument("--repeat", type=int, default=1, help="timed passes per row; the best counts")
    ap.add_argument("--rank", type=int, default=32, help="LoRA rank (default 32)")
    ap.add_argument("--models", nargs="+", default=["sd21", "sdxl"], choices=["sd21", "sdxl"])
    ap.add_argument("--wheels", type=Path, help="install diffusers/compel/lark wheels from here if missing")
    ap.add_argument("--workdir", type=Path, help="where the models are built (default: a temporary folder)")
    ap.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = ap.parse_args(argv)
    ensure_packages(args.wheels)
    import torch

    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print(
            "error: no CUDA device; run on a GPU machine, or check the script with --cpu-smoke",
            file=sys.stderr,
        )
        return 1
    device = "cpu" if smoke else "cuda"
    steps, batch = args.steps or (2 if smoke else 20), args.batch or (2 if smoke else 4)
    count = args.count or (4 if smoke else 8)
    if smoke:
        torch.set_num_threads(1)
    import diffusers
    from gpu_sd21 import build_pipeline

    from stable_discovery.backends.diffusers_backend import DiffusersBackend, quiet_libraries

    quiet_libraries()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else (platform.processor() or platform.machine())
    header = (
        f"{gpu}; torch {torch.__version__}, diffusers {diffusers.__version__}; "
        f"{'CPU smoke test, scaled-down models' if smoke else 'random weights, float16, SDPA'}; "
        f"{steps} steps, batch {batch}, {count} images per row, LoRA rank {args.rank}"
    )
    log(header)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sdp-models-"))
    rows: list[tuple[str, str, float]] = []
    costs: list[tuple[str, float, float]] = []
    for name in args.models:
        size = 64 if smoke else (768 if name == "sd21" else 1024)
        model_dir, lora_dir = workdir / name, workdir / f"{name}-loras"
        t0 = time.perf_counter()
        if not (model_dir / "model_index.json").is_file():
            (build_pipeline if name == "sd21" else build_sdxl)(model_dir, smoke, device)
        if not (lora_dir / "b.safetensors").is_file():
            build_loras(model_dir, lora_dir, "cpu", args.rank)
        log(f"{name}: built and saved in {time.perf_counter() - t0:.1f} s")
        backend = DiffusersBackend(
            device=device, dtype="float32" if smoke else "float16", lora_dirs=[str(lora_dir)]
        )
        model = str(model_dir)
        label = f"{'SD 2.1' if name == 'sd21' else 'SDXL'} {size}px"
        cases = [
            ("text, weighting off", samples(PLAIN, count, size, steps, model, "none", ())),
            ("A1111 weighting (compel)", samples(WEIGHTED, count, size, steps, model, "a1111", ())),
            ("+ LoRA", samples(WEIGHTED, count, size, steps, model, "a1111", ("<lora:a:0.8>",))),
        ]
        switching = samples(WEIGHTED, count, size, steps, model, "a1111", ())
        switching = [
            s.__class__(
                s.index,
                s.prompt + (" <lora:a:0.8>" if (s.index // batch) % 2 == 0 else " <lora:b:0.6>"),
                s.negative,
                s.settings,
                s.seed,
                s.trace,
            )
            for s in switching
        ]
        cases.append(("LoRA switching every batch", switching))
        for case, batch_samples in cases:
            seconds = timed(backend, batch_samples, batch, args.repeat, sync)
            rows.append((label, case, count / seconds))
            log(f"{label:<14} {case:<28} {count / seconds:8.2f} img/s")
        first, switch = lora_costs(backend, model, sync)
        costs.append((label, first, switch))
        log(f"{label}: first LoRA load {first * 1000:.0f} ms, one switch {switch * 1000:.1f} ms")
        backend.close()
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    table = ["| model | case | images/s |", "|---|---|---:|"]
    table += [f"| {m} | {c} | {r:.2f} |" for m, c, r in rows]
    table += ["", "| model | first LoRA load | one LoRA switch |", "|---|---:|---:|"]
    table += [f"| {m} | {f * 1000:.0f} ms | {s * 1000:.1f} ms |" for m, f, s in costs]
    text = f"{header}\n\n" + "\n".join(table) + "\n"
    print("\n" + text)
    if args.out is not None:
        args.out.write_text(f"`python bench/gpu_models.py {' '.join(argv or sys.argv[1:])}`\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
