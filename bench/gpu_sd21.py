"""Stable Diffusion 2.1 on a GPU: the naive loop, planner batches, fp16 + SDPA, torch.compile.

A pipeline with Stable Diffusion 2.1's real architecture — the UNet, VAE and OpenCLIP-ViT-H
text encoder configs of ``stabilityai/stable-diffusion-2-1``, hard-coded below — is built
with random weights (no download), saved with ``save_pretrained`` and loaded by the
project's :class:`~stable_discovery.backends.diffusers_backend.DiffusersBackend` through
the ordinary ``from_pretrained`` path. Random weights cost exactly what the real ones
cost, so the timings stand for the real model (the images are noise).

Rows, at 512x512 and 768x768:

1. ``naive``: the original tool — fp32, classic (matmul + softmax) attention, one image
   per pipeline call.
2. ``batched``: the same fp32 pipeline fed by the planner (``plan(samples, B)``).
3. ``fp16+sdpa``: batches in float16 with PyTorch's fused scaled-dot-product attention.
4. ``+compile``: the same with ``torch.compile`` on the UNet (compile time reported apart).

Figures: images/s end to end (text encoder, UNet steps with classifier-free guidance,
VAE decode, conversion to PIL), best of ``--repeat`` timed passes after a warm-up pass
with the same shapes. The floor is the UNet's FLOP count per image (one forward counted
with ``torch.utils.flop_counter.FlopCounterMode`` × steps × 2 for CFG) at the GPU's peak:
no implementation can beat that rate; "% of peak" is how close a row comes.

Usage (one command, about 5–8 minutes on an H100)::

    python bench/gpu_sd21.py                          # prints the table
    python bench/gpu_sd21.py --out bench/results/gpu_sd21.md
    python bench/gpu_sd21.py --smoke                  # CPU check: scaled-down model, tiny sizes

``--smoke`` runs everything on CPU with a scaled-down model (same block structure), 64 and
96 pixels and 2 steps, so the script can be checked without a GPU; it also counts the
FLOPs of the full-size SD 2.1 UNet on the meta device.
"""

from __future__ import annotations

import argparse
import gc
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# -- Stable Diffusion 2.1's published configs (stabilityai/stable-diffusion-2-1) ------------

SD21_UNET: dict[str, Any] = {
    "sample_size": 96,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "only_cross_attention": False,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),  # diffusers' name; these are head counts (64 dims each)
    "dual_cross_attention": False,
    "use_linear_projection": True,
    "upcast_attention": True,
    "num_class_embeds": None,
}

SD21_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 768,
}

# OpenCLIP ViT-H/14's text tower as transformers' CLIPTextModel (SD 2 uses the penultimate
# layer, hence 23 of its 24 layers).
SD21_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 512,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "initializer_range": 0.02,
    "initializer_factor": 1.0,
}

# The same block structure, scaled down for --smoke on CPU.
SMOKE_UNET = {
    **SD21_UNET,
    "block_out_channels": (32, 64, 64, 64),
    "attention_head_dim": (1, 2, 2, 2),
    "layers_per_block": 1,
    "cross_attention_dim": 64,
    "sample_size": 8,
}
SMOKE_VAE = {**SD21_VAE, "block_out_channels": (32, 32, 32, 32), "layers_per_block": 1, "sample_size": 64}
SMOKE_TEXT = {
    **SD21_TEXT,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 64,
}

SD21_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
}

# Dense peak TFLOPS (fp16/bf16 tensor cores, fp32 without tensor cores), from NVIDIA's
# data sheets; the first name found in torch.cuda.get_device_name() wins.
PEAKS: list[tuple[str, float, float]] = [
    ("H100 PCIe", 756.0, 51.0),
    ("H100 NVL", 835.0, 60.0),
    ("H100", 989.0, 67.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989.0, 67.0),
    ("H20", 148.0, 44.0),
    ("A100", 312.0, 19.5),
    ("L40S", 362.0, 91.6),
    ("L4", 121.0, 30.3),
    ("A10", 125.0, 31.2),
    ("4090", 165.0, 82.6),
]

PROMPTS = (
    "a golden retriever in the rain, oil painting",
    "a red fox at dawn, photo, 35mm",
    "an old lighthouse on the moon, watercolor",
    "a bowl of ramen in a forest, pixel art",
)


@dataclass
class Row:
    size: int
    mode: str
    batch: int
    images_per_s: float | None
    note: str = ""
    max_diff: int | None = None


def log(msg: str) -> None:
    print(msg, flush=True)


def build_pipeline(folder: Path, smoke: bool, device: str) -> None:
    """Build SD 2.1's architecture with random weights and save it (fp16 on GPU, to keep
    the files small; the backend casts on load) into ``folder``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from stable_discovery.backends.diffusers_backend import quiet_libraries
    from stable_discovery.backends.tiny import write_tokenizer_files

    quiet_libraries()
    unet_cfg, vae_cfg, text_cfg = (
        (SMOKE_UNET, SMOKE_VAE, SMOKE_TEXT) if smoke else (SD21_UNET, SD21_VAE, SD21_TEXT)
    )
    with tempfile.TemporaryDirectory() as tok_dir:
        # SD 2.1's tokenizer is CLIP's 49408-token BPE; a byte-level stand-in costs the
        # same downstream (the text encoder always sees 77 positions)
        write_tokenizer_files(Path(tok_dir))
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU: seconds instead of a minute
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text = CLIPTextModel(
            CLIPTextConfig(
                **text_cfg,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**SD21_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if device != "cpu":
        pipe.to(torch.float16)
    pipe.save_pretrained(folder, safe_serialization=True)
    n = sum(p.numel() for p in unet.parameters()) / 1e6
    log(
        f"built {'scaled-down ' if smoke else ''}SD 2.1 architecture: UNet {n:.0f}M parameters, saved to "
        f"{folder}"
    )
    del pipe, unet, vae, text
    gc.collect()
    if device != "cpu":
        torch.cuda.empty_cache()


def unet_flops(unet_cfg: dict[str, Any], text_dim: int, size: int) -> int:
    """FLOPs of one UNet forward for one latent (no CFG) at ``size`` pixels, counted on
    the meta device (no memory, no time) with classic attention (matmuls counted)."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
    unet.set_attn_processor(AttnProcessor())
    x = torch.empty(1, 4, size // 8, size // 8, device="meta")
    ctx = torch.empty(1, 77, text_dim, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(x, torch.tensor(500, device="meta"), ctx)
    return int(counter.get_total_flops())


def make_samples(count: int, size: int, steps: int) -> list[Any]:
    from stable_discovery.sampling.sample import Sample

    settings = {
        "model": "sd21-random",
        "width": size,
        "height": size,
        "steps": steps,
        "guidance": 7.5,
        "scheduler": "ddim",
    }
    return [
        Sample(i, PROMPTS[i % len(PROMPTS)], "blurry, low quality", dict(settings), 1000 + i, {})
        for i in range(count)
    ]


def run_images(backend: Any, model: str, samples: list[Any], batch: int) -> list[Any]:
    """Generate through the planner with batches of ``batch`` (1 = the naive loop)."""
    from dataclasses import replace

    from stable_discovery.run.planner import plan

    out: list[Any] = [None] * len(samples)
    moved = [replace(s, settings={**s.settings, "model": model}) for s in samples]
    for b in plan(moved, batch):
        for s, im in zip(b.samples, backend.generate(b), strict=False):
            out[s.index] = im
    return out


def timed(
    backend: Any, model: str, samples: list[Any], batch: int, repeat: int, sync: Any
) -> tuple[float, list[Any], float]:
    """(best seconds, images, warm-up seconds). The warm-up runs one batch of the same
    shape with 2 steps: it pays for allocation, cuDNN choices and compilation."""
    from dataclasses import replace

    warm = [replace(s, settings={**s.settings, "steps": 2}) for s in samples[:batch]]
    t0 = time.perf_counter()
    run_images(backend, model, warm, batch)
    sync()
    warm_s = time.perf_counter() - t0
    best = float("inf")
    images: list[Any] = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        images = run_images(backend, model, samples, batch)
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, images, warm_s


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU check: scaled-down model, 64/96 px, 2 steps")
    ap.add_argument("--sizes", type=int, nargs="+", help="square sizes (default 512 768; smoke 64 96)")
    ap.add_argument("--steps", type=int, help="denoising steps (default 20; smoke 2)")
    ap.add_argument("--count", type=int, help="images per row, a multiple of --batch (default 8; smoke 2)")
    ap.add_argument("--batch", type=int, help="planner batch size (default 8; smoke 2)")
    ap.add_argument("--repeat", type=int, default=1, help="timed passes per row; the best counts")
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile row")
    ap.add_argument(
        "--compile-backend",
        help="torch.compile backend (default inductor; smoke: eager, "
        "which traces the UNet without generating code, since inductor on CPU takes minutes)",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=450.0,
        help="seconds after which remaining rows are skipped (default 450)",
    )
    ap.add_argument(
        "--peak-tflops",
        type=float,
        nargs=2,
        metavar=("FP16", "FP32"),
        help="the GPU's dense peak TFLOPS (default: looked up by GPU name)",
    )
    ap.add_argument(
        "--workdir", type=Path, help="where the random-weights model is saved (default: a temp folder)"
    )
    ap.add_argument("--out", type=Path, help="also write the table as Markdown here")
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        print(
            "error: bench/gpu_sd21.py needs PyTorch and diffusers: pip install -e '.[diffusers]'",
            file=sys.stderr,
        )
        return 1
    smoke = args.smoke
    if not smoke and not torch.cuda.is_available():
        print(
            "error: no CUDA device: bench/gpu_sd21.py measures Stable Diffusion 2.1 on an NVIDIA GPU, "
            f"and torch {torch.__version__} sees none"
            + (" (this is a CPU-only build of PyTorch)" if torch.version.cuda is None else "")
            + ". Run it on a GPU machine, or check the script here with --smoke.",
            file=sys.stderr,
        )
        return 1
    device = "cpu" if smoke else "cuda"
    sizes = args.sizes or ([64, 96] if smoke else [512, 768])
    steps = args.steps or (2 if smoke else 20)
    batch = args.batch or (2 if smoke else 8)
    count = args.count or batch
    if count % batch:
        print("error: --count must be a multiple of --batch (one batch shape per row)", file=sys.stderr)
        return 2
    if smoke:
        torch.set_num_threads(1)

    from stable_discovery.backends.diffusers_backend import DiffusersBackend, quiet_libraries

    quiet_libraries()  # before diffusers' pipelines are imported: transformers warns then

    start = time.perf_counter()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else (platform.processor() or platform.machine())
    import diffusers

    info = (
        f"{gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}, "
        f"{'smoke test on CPU, scaled-down model' if smoke else 'SD 2.1 architecture, random weights'}"
    )
    log(info)
    if args.peak_tflops:
        peak16, peak32 = args.peak_tflops
    else:
        peak16, peak32 = next(((a, b) for name, a, b in PEAKS if name in gpu), (0.0, 0.0))

    # FLOPs per image: one UNet forward per latent × 2 (CFG) × steps
    unet_cfg, text_dim = (SMOKE_UNET, SMOKE_TEXT["hidden_size"]) if smoke else (SD21_UNET, 1024)
    flops = {s: unet_flops(unet_cfg, text_dim, s) * 2 * steps for s in sizes}
    if smoke:  # the real model's figures as well, so they are checked here too
        for s in (512, 768):
            f = unet_flops(SD21_UNET, 1024, s)
            log(
                f"full SD 2.1 UNet at {s}: {f / 1e12:.3f} TFLOP per forward, "
                f"{f * 2 * 20 / 1e12:.1f} TFLOP per 20-step image with CFG"
            )

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sdp-sd21-"))
    model_dir = workdir / "sd21-random"
    if not (model_dir / "model_index.json").is_file():
        t0 = time.perf_counter()
        build_pipeline(model_dir, smoke, device)
        log(f"build + save: {time.perf_counter() - t0:.1f} s")
    model = str(model_dir)

    # the modes: (name, backend knobs, batch)
    half = (
        "float32" if smoke else "float16"
    )  # CPU cannot run SD in float16: smoke keeps the path, not the dtype
    modes: list[tuple[str, dict[str, Any], int]] = [
        ("naive (fp32, classic attention, 1 per call)", {"dtype": "float32", "attention": "eager"}, 1),
        ("batched (fp32, classic attention)", {"dtype": "float32", "attention": "eager"}, batch),
        (f"{'fp16' if not smoke else 'fp32*'} + SDPA, batched", {"dtype": half, "attention": "sdpa"}, batch),
    ]
    if not args.no_compile:
        modes.append(
            (
                f"{'fp16' if not smoke else 'fp32*'} + SDPA + torch.compile, batched",
                {
                    "dtype": half,
                    "attention": "sdpa",
                    "compile": args.compile_backend or ("eager" if smoke else True),
                },
                batch,
            )
        )

    rows: list[Row] = []
    backends: dict[str, Any] = {}
    samples = {size: make_samples(count, size, steps) for size in sizes}
    reference: dict[int, list[Any]] = {}
    try:
        # modes outside, sizes inside: each pipeline is loaded (and compiled) once
        for name, knobs, bs in modes:
            for size in sizes:
                if time.perf_counter() - start > args.budget:
                    rows.append(Row(size, name, bs, None, "skipped: time budget"))
                    log(f"{size}  {name}: skipped (time budget)")
                    continue
                tag = repr(sorted(knobs.items()))
                if tag not in backends:
                    for other in backends.values():  # one pipeline on the GPU at a time
                        other.close()
                    backends.clear()
                    t0 = time.perf_counter()
                    backends[tag] = DiffusersBackend(device=device, **knobs)
                    backends[tag].check_available(model)
                    log(f"loaded {knobs} in {time.perf_counter() - t0:.1f} s")
                backend = backends[tag]
                use = bs
                while True:
                    try:
                        seconds, images, warm_s = timed(backend, model, samples[size], use, args.repeat, sync)
                        break
                    except Exception as e:  # out of memory (a BackendError) → smaller batches
                        if "out of" not in str(e).lower() or use == 1:
                            raise
                        use //= 2
                        gc.collect()
                        log(f"{size}  {name}: out of memory at batch {use * 2}, trying {use}")
                rate = count / seconds
                import numpy as np

                arrays = [np.asarray(im, dtype=np.int16) for im in images]
                diff = None
                if size not in reference:
                    reference[size] = arrays
                else:
                    diff = max(
                        int(np.abs(a - r).max()) for a, r in zip(arrays, reference[size], strict=False)
                    )
                black = sum(1 for a in arrays if a.max() == 0)  # NaN latents decode to black
                note = f"warm-up {warm_s:.1f} s" + (f"; {black} black images (NaN)" if black else "")
                if use != bs:
                    note += f"; batch {bs} ran out of memory"
                rows.append(Row(size, name, use, rate, note, diff))
                log(f"{size}  {name}: {rate:.3f} images/s ({note})")
    finally:
        for b in backends.values():
            b.close()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- the table -------------------------------------------------------------------------
    lines = [
        f"Device: {info}.",
        f"{count} images per row, {steps} DDIM steps, CFG 7.5; best of {args.repeat} after a warm-up.",
        "UNet floor: FLOPs per image = one UNet forward (FlopCounterMode) x 2 (CFG) x steps; "
        f"peak {peak16:g} TFLOPS fp16, {peak32:g} TFLOPS fp32 (dense).",
        "",
        "| size | mode | batch | images/s | s/image | speedup | UNet TFLOPS | % of peak | max diff vs naive "
        "| notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size in sizes:
        base = next((r.images_per_s for r in rows if r.size == size and r.images_per_s), None)
        for r in (r for r in rows if r.size == size):
            if r.images_per_s is None:
                lines.append(f"| {size} | {r.mode} | {r.batch} | – | – | – | – | – | – | {r.note} |")
                continue
            achieved = r.images_per_s * flops[size] / 1e12  # UNet TFLOPS actually sustained
            peak = peak16 if "fp16" in r.mode else peak32
            pct = f"{100 * achieved / peak:.0f}%" if peak else "–"
            lines.append(
                f"| {size} | {r.mode} | {r.batch} | {r.images_per_s:.3f} | {1 / r.images_per_s:.3f} | "
                f"{r.images_per_s / base:.2f}x | {achieved:.3g} | {pct} | "
                f"{'–' if r.max_diff is None else r.max_diff} | {r.note} |"
            )
        tf = flops[size] / 1e12
        if peak16:
            ceiling = (
                f"{peak16 * 1e12 / flops[size]:.2f} (fp16 peak); "
                f"{peak32 * 1e12 / flops[size]:.3f} (fp32 peak)"
            )
            floor_s = f"{flops[size] / (peak16 * 1e12):.3f} (fp16)"
        else:
            ceiling, floor_s = "peak unknown (--peak-tflops)", "–"
        lines.append(f"| {size} | floor: UNet {tf:.3g} TFLOP per image | | {ceiling} | {floor_s} | | | | | |")
    if smoke:
        lines.append("")
        lines.append("fp32*: --smoke on CPU keeps the fp16 rows' code path but runs them in float32.")
    lines.append("")
    lines.append(f"Total time: {time.perf_counter() - start:.0f} s.")
    table = "\n".join(lines)
    print()
    print(table)
    if args.out:
        command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]))] + list(sys.argv[1:]))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            f"# SD 2.1 architecture on a GPU\n\nCommand: `{command}`\n\n{table}\n", encoding="utf-8"
        )
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
