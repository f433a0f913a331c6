"""Stable Diffusion 2.1 on a GPU: the plain loop, this project's backend, each speed knob,
``--batch auto``, and ``sdp run`` end to end on the same model.

A pipeline with Stable Diffusion 2.1's real architecture — the UNet, VAE and OpenCLIP-ViT-H
text encoder configs of ``stabilityai/stable-diffusion-2-1``, hard-coded below — is built
with random weights (no download), saved with ``save_pretrained`` and loaded by the
project's :class:`~stable_discovery.backends.diffusers_backend.DiffusersBackend` through
the ordinary ``from_pretrained`` path. Random weights cost exactly what the real ones
cost, so the timings stand for the real model (the images are noise).

Rows, at each ``--sizes`` (default 512), 20 DDIM steps, CFG 7.5:

1. ``plain loop``: float16 and PyTorch's fused attention, one image per pipeline call
   (what most scripts do).
2. ``reference``: the same in batches of ``--batch`` (8), the planner's batches; every
   knob row below changes one thing from it, and its images are compared with this
   row's (max and mean pixel difference, in levels of 255).
3. One row per knob: channels-last, fused QKV projections, each SDPA kernel (flash,
   cuDNN, efficient), bfloat16 instead of float16.
4. ``sdp run`` end to end with the reference settings: the real command (PNG files with
   metadata, the run store, the writer pipeline), its steady rate from its first
   recorded batch to its last, against the reference row's rate.
5. ``--batch auto``: batches of 32 made in the pieces that fit (:class:`BatchFitter`).
6. ``torch.compile`` (default mode); ``--optimize`` (compile, channels-last, fused QKV);
   ``--optimize`` with CUDA graphs; ``sdp run --optimize`` end to end. Compile time is
   reported in the notes (the warm-up pass).
7. With ``--max-autotune``: compile mode max-autotune (several minutes more); with
   ``--fp32``: the original tool's fp32 loop with classic attention.

Figures: images/s end to end (text encoder, UNet steps with classifier-free guidance,
VAE decode, conversion to PIL), best of ``--repeat`` timed passes after a warm-up pass
with the same shapes. The floor is the UNet's FLOP count per image (one forward counted
with ``torch.utils.flop_counter.FlopCounterMode`` × steps × 2 for CFG) at the GPU's dense
fp16 peak: "% of peak" is how close a row comes.

Usage (one command: every row but ``--max-autotune`` and ``--fp32`` took 234 s on an H100,
the model built and compiled twice; rows that would end past ``--budget`` seconds are
skipped and say so; ``--only``/``--skip`` pick rows by words of their names)::

    python bench/gpu_sd21.py --out bench/results/gpu_sd21.md
    python bench/gpu_sd21.py --wheels bench/wheels ...   # install diffusers etc. if missing
    python bench/gpu_sd21.py --smoke                      # CPU check: scaled-down model, 64 px

``--smoke`` runs everything on CPU with a scaled-down model (same block structure), 64
pixels and 2 steps, so the script can be checked without a GPU (float32 in place of
float16; the CUDA-only rows say they were skipped; compile uses the ``eager`` backend).
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

TEMPLATE = """\
subject = a golden retriever | a red fox | an old lighthouse | a bowl of ramen
place = in the rain | at dawn | on the moon | in a forest
style = oil painting | photo, 35mm | watercolor | pixel art
prompt = <subject> <place>, <style>
negative = blurry, low quality
@steps = 20
@guidance = 7.5
@scheduler = ddim
@seed = 7
"""

#: The reference row's knobs on a GPU.
REFERENCE = {"dtype": "float16", "attention": "sdpa"}


@dataclass
class Case:
    """A row: the backend's knobs, the batch, how it runs (``backend``: the planner's
    batches; ``auto``: ``--batch auto``; ``sdp-run``: the command end to end)."""

    name: str
    knobs: dict[str, Any]
    batch: int
    kind: str = "backend"
    cuda_only: bool = False
    reference: bool = False
    #: about how long the row takes on an H100 (seconds): a row that would end past the
    #: budget is skipped, so that one command stays under 8 minutes
    cost: float = 20.0
    #: more ``sdp run`` arguments (``sdp-run`` rows)
    run_args: tuple[str, ...] = ()
    #: images of a backend row (default ``--count``)
    count: int | None = None


@dataclass
class Row:
    size: int
    case: str
    batch: int | str
    images_per_s: float | None
    note: str = ""
    max_diff: int | None = None
    mean_diff: float | None = None


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


def make_samples(program: Any, model: str, count: int, size: int, steps: int) -> list[Any]:
    """The samples ``sdp run`` makes of the template with these overrides: every row
    makes the same images, so any two can be compared."""
    from stable_discovery.plugins import get_sampler
    from stable_discovery.run.runplan import RunOptions, resolve_plan

    options = RunOptions(
        "bench", count=count, overrides={"model": model, "size": f"{size}x{size}", "steps": str(steps)}
    )
    return list(resolve_plan(program, None, options, get_sampler("random")).todo(set()))


def run_images(backend: Any, samples: list[Any], batch: int, fitter: Any = None) -> list[Any]:
    """Generate through the planner with batches of ``batch`` (1 = the plain loop); with
    a fitter, in the pieces that fit (``--batch auto``)."""
    from stable_discovery.run.planner import plan

    out: list[Any] = [None] * len(samples)
    first = samples[0].index if samples else 0
    for b in plan(samples, batch):
        pieces = fitter.generate(backend, b) if fitter is not None else [(b, backend.generate(b), 0.0)]
        for piece, images, _s in pieces:
            for s, im in zip(piece.samples, images, strict=True):
                out[s.index - first] = im
    return out


def timed(
    backend: Any, samples: list[Any], batch: int, repeat: int, sync: Any, fitter: Any = None
) -> tuple[float, list[Any], float]:
    """(best seconds, images, warm-up seconds). The warm-up makes one batch of the same
    shape with 2 steps: it pays for allocation, cuDNN's choices, compilation, CUDA graph
    capture and, with a fitter, finding the batch that fits."""
    from dataclasses import replace

    warm = [replace(s, settings={**s.settings, "steps": 2}) for s in samples[:batch]]
    t0 = time.perf_counter()
    run_images(backend, warm, batch, fitter)
    sync()
    warm_s = time.perf_counter() - t0
    best = float("inf")
    images: list[Any] = []
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        images = run_images(backend, samples, batch, fitter)
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, images, warm_s


def knob_flags(knobs: dict[str, Any]) -> list[str]:
    """``sdp run``'s flags for a backend's knobs."""
    flags: list[str] = []
    for name, value in knobs.items():
        flag = "--" + name.replace("_", "-")
        if name == "attention":
            continue  # sdpa is the backend's default
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        elif name == "compile":
            flags += [flag, "default" if value is True else str(value)]
        else:
            flags += [flag, str(value)]
    return flags


def sdp_run(
    workdir: Path,
    model: str,
    size: int,
    steps: int,
    batch: int,
    count: int,
    knobs: dict[str, Any],
    device: str,
    run_args: Sequence[str] = (),
) -> tuple[float, str, dict[str, Any]]:
    """``sdp run`` of the bench template on the model, in this process: (its steady
    images/s from its first recorded batch to its last, the note, its images by index)."""
    import contextlib
    import io
    import sqlite3

    from PIL import Image

    from stable_discovery.cli.main import main as sdp

    ws = workdir / f"ws-{size}-{len(list(workdir.glob('ws-*')))}"
    tmpl = workdir / "bench.sdp"
    tmpl.write_text(TEMPLATE)
    argv = ["run", str(tmpl), "--model", model, "--workspace", str(ws), "--count", str(count)]
    argv += [
        "--batch",
        str(batch),
        "--set",
        f"size={size}x{size}",
        "--set",
        f"steps={steps}",
        "--device",
        device,
    ]
    argv += knob_flags(knobs) + list(run_args)
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = sdp(argv)
    wall = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"sdp run failed: {err.getvalue().strip().splitlines()[-1]}")
    db = sqlite3.connect(ws / "discovery.db")
    stamps = sorted({r[0] for r in db.execute("SELECT created_at FROM samples WHERE status = 'done'")})
    first = db.execute("SELECT first_image_s FROM runs").fetchone()[0]
    db.close()
    # rows of one batch share their commit time: the steady rate leaves the first batch out
    steady = (count - batch) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    images = {}
    for i in range(count):
        with Image.open(ws / "bench" / f"{i:05d}.png") as im:
            images[i] = im.convert("RGB")
    note = f"steady rate (first batch left out); wall {wall:.1f} s with the load; first image {first:.1f} s"
    return steady, note, images


def cases(args: argparse.Namespace, smoke: bool, batch: int) -> list[Case]:
    """The rows, most important first (the budget skips the last)."""
    ref = {"dtype": "float32", "attention": "sdpa"} if smoke else dict(REFERENCE)
    compile_backend = {"compile_backend": args.compile_backend or "eager"} if smoke else {}
    if args.compile_backend and not smoke:
        compile_backend = {"compile_backend": args.compile_backend}
    optimize = {**ref, "optimize": True, **compile_backend}
    if smoke:
        optimize["compile"] = "default"  # the CPU preset does not compile
        optimize["channels_last"] = True
    run_count = args.run_count or (4 * batch if smoke else 8 * batch)
    out = [
        Case("plain loop (1 per call)", ref, 1),
        Case("reference: batched", ref, batch, reference=True),
        Case(f"backend alone, {run_count} images (reference settings)", ref, batch, count=run_count),
        Case("sdp run end to end (reference settings)", ref, batch, kind="sdp-run", cost=30.0),
        *(
            Case(
                f"sdp run end to end, --encoders {n}",
                ref,
                batch,
                kind="sdp-run",
                cost=30.0,
                run_args=("--encoders", str(n)),
            )
            for n in (0, 1, 2)
        ),
        Case("+ channels-last", {**ref, "channels_last": True}, batch),
        Case("+ fused QKV", {**ref, "fused_qkv": True}, batch),
        Case("SDPA flash", {**ref, "sdpa": "flash"}, batch),
        Case("SDPA cuDNN", {**ref, "sdpa": "cudnn"}, batch, cuda_only=True),
        Case("SDPA efficient", {**ref, "sdpa": "efficient"}, batch, cuda_only=True),
        Case("bf16 instead of fp16", {**ref, "dtype": "bfloat16"}, batch),
        Case("--batch auto", ref, batch, kind="auto"),
        Case(
            "+ torch.compile (default mode)",
            {**ref, "compile": "default", **compile_backend},
            batch,
            cost=100.0,
        ),
        Case(
            "+ torch.compile, channels-last off",
            {**ref, "compile": "default", "channels_last": False, **compile_backend},
            batch,
            cost=100.0,
        ),
        Case(
            "+ torch.compile + fused QKV",
            {**ref, "compile": "default", "fused_qkv": True, **compile_backend},
            batch,
            cost=100.0,
        ),
        Case("--optimize", optimize, batch, cost=100.0),
        Case(
            "--optimize + CUDA graphs", {**optimize, "cuda_graphs": True}, batch, cuda_only=True, cost=110.0
        ),
        Case("sdp run end to end, --optimize", optimize, batch, kind="sdp-run", cost=110.0),
        Case(
            "+ torch.compile, batch 16",
            {**ref, "compile": "default", **compile_backend},
            2 * batch,
            cost=100.0,
            count=4 * batch,
        ),
    ]
    if args.max_autotune:
        out.append(
            Case("+ torch.compile max-autotune", {**optimize, "compile": "max-autotune"}, batch, cost=400.0)
        )
    if args.fp32:
        out.append(
            Case(
                "original: fp32, classic attention, 1 per call", {"dtype": "float32", "attention": "eager"}, 1
            )
        )
    return out


def ensure_packages(wheels: Path | None) -> None:
    """Install the carried wheels (``--wheels``) when diffusers or its companions do not
    import (the GPU machine has PyTorch and transformers only)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_models import ensure_packages as install

    install(wheels)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print(
            "error: bench/gpu_sd21.py needs PyTorch and diffusers: pip install -e '.[diffusers]'",
            file=sys.stderr,
        )
        return 1
    if args.wheels is not None:
        ensure_packages(args.wheels)
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
    bench = Bench(args, torch)
    try:
        bench.run_all()
    finally:
        bench.close()
    table = bench.table()
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU check: scaled-down model, 64 px, 2 steps")
    ap.add_argument("--sizes", type=int, nargs="+", help="square sizes (default 512; smoke 64)")
    ap.add_argument("--steps", type=int, help="denoising steps (default 20; smoke 2)")
    ap.add_argument("--count", type=int, help="images per row, a multiple of --batch (default 16; smoke 4)")
    ap.add_argument("--batch", type=int, help="planner batch size (default 8; smoke 2)")
    ap.add_argument("--run-count", type=int, help="images of the sdp run rows (default 64; smoke 8)")
    ap.add_argument("--repeat", type=int, default=1, help="timed passes per row; the best counts")
    ap.add_argument("--max-autotune", action="store_true", help="add a compile max-autotune row (minutes)")
    ap.add_argument("--fp32", action="store_true", help="add the original tool's fp32 loop")
    ap.add_argument("--compile-backend", help="torch.compile backend (default inductor; smoke: eager)")
    ap.add_argument(
        "--only", nargs="+", metavar="WORD", help="only the rows whose name has one of these words"
    )
    ap.add_argument(
        "--skip", nargs="+", metavar="WORD", help="leave out the rows whose name has one of these words"
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=420.0,
        help="seconds after which remaining rows are skipped (default 420)",
    )
    ap.add_argument(
        "--peak-tflops",
        type=float,
        metavar="FP16",
        help="the GPU's dense fp16 peak TFLOPS (default: looked up by GPU name)",
    )
    ap.add_argument("--wheels", type=Path, help="install diffusers/compel/lark wheels from here if missing")
    ap.add_argument(
        "--workdir", type=Path, help="where the random-weights model is saved (default: a temp folder)"
    )
    ap.add_argument("--out", type=Path, help="also write the table as Markdown here")
    return ap.parse_args(argv)


class Bench:
    """One bench run: the model built, the rows measured, the table."""

    def __init__(self, args: argparse.Namespace, torch: Any) -> None:
        import diffusers

        from stable_discovery.backends.diffusers_backend import quiet_libraries
        from stable_discovery.language.program import loads

        quiet_libraries()  # before diffusers' pipelines are imported: transformers warns then
        self.args, self.torch, self.smoke = args, torch, args.smoke
        self.start = time.perf_counter()
        self.device = "cpu" if self.smoke else "cuda"
        self.sizes = args.sizes or ([64] if self.smoke else [512])
        self.steps = args.steps or (2 if self.smoke else 20)
        self.batch = args.batch or (2 if self.smoke else 8)
        self.count = args.count or (2 * self.batch)
        self.run_count = args.run_count or (4 * self.batch if self.smoke else 8 * self.batch)
        if self.count % self.batch:
            raise SystemExit("error: --count must be a multiple of --batch (one batch shape per row)")
        if self.smoke:
            torch.set_num_threads(1)
        self.sync = torch.cuda.synchronize if self.device == "cuda" else (lambda: None)
        gpu = (
            torch.cuda.get_device_name(0)
            if self.device == "cuda"
            else (platform.processor() or platform.machine())
        )
        self.info = (
            f"{gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}), "
            f"diffusers {diffusers.__version__}, "
            + (
                "smoke test on CPU, scaled-down model"
                if self.smoke
                else "SD 2.1 architecture, random weights"
            )
        )
        log(self.info)
        self.peak = args.peak_tflops or next((a for name, a, _b in PEAKS if name in gpu), 0.0)
        unet_cfg, text_dim = (SMOKE_UNET, SMOKE_TEXT["hidden_size"]) if self.smoke else (SD21_UNET, 1024)
        self.flops = {s: unet_flops(unet_cfg, text_dim, s) * 2 * self.steps for s in self.sizes}
        if self.smoke:  # the real model's figures as well, so they are checked here too
            for s in (512, 768):
                f = unet_flops(SD21_UNET, 1024, s)
                log(
                    f"full SD 2.1 UNet at {s}: {f / 1e12:.3f} TFLOP per forward, "
                    f"{f * 2 * 20 / 1e12:.1f} TFLOP per 20-step image with CFG"
                )
        self.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sdp-sd21-"))
        model_dir = self.workdir / "sd21-random"
        if not (model_dir / "model_index.json").is_file():
            t0 = time.perf_counter()
            build_pipeline(model_dir, self.smoke, self.device)
            log(f"build + save: {time.perf_counter() - t0:.1f} s")
        self.model = str(model_dir)
        self.program = loads(TEMPLATE, name="bench.sdp")
        self.rows: list[Row] = []
        self.reference: dict[int, list[Any]] = {}
        self.backend: Any = None
        self.backend_knobs: dict[str, Any] | None = None

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        if self.args.workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def run_all(self) -> None:
        for case in cases(self.args, self.smoke, self.batch):
            name = case.name.lower()
            if self.args.only and not any(w.lower() in name for w in self.args.only):
                continue
            if self.args.skip and any(w.lower() in name for w in self.args.skip):
                continue
            for size in self.sizes:
                self.run_case(case, size)

    def run_case(self, case: Case, size: int) -> None:
        cost = 0.0 if self.smoke else case.cost * (size / 512) ** 2
        if time.perf_counter() - self.start + cost > self.args.budget:
            self.skip(case, size, f"skipped: would end past the {self.args.budget:.0f} s budget (--budget)")
        elif case.cuda_only and self.device != "cuda":
            self.skip(case, size, "skipped: needs CUDA")
        else:
            try:
                self.measure(case, size)
            except Exception as exc:  # noqa: BLE001 - a row that fails says why; the others go on
                self.skip(case, size, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
                gc.collect()
                if self.device == "cuda":
                    self.torch.cuda.empty_cache()

    def skip(self, case: Case, size: int, why: str) -> None:
        self.rows.append(Row(size, case.name, case.batch, None, why))
        log(f"{size}  {case.name}: {why}")

    def backend_for(self, knobs: dict[str, Any]) -> Any:
        """A backend with these knobs, the model loaded (one pipeline on the device at a time)."""
        from stable_discovery.backends.diffusers_backend import DiffusersBackend

        if self.backend_knobs == knobs:
            return self.backend
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        self.torch._dynamo.reset()  # each row compiles afresh (no cache limit reached, no reuse)
        t0 = time.perf_counter()
        backend = DiffusersBackend(device=self.device, **knobs)
        backend.check_available(self.model)
        log(f"loaded {knobs} in {time.perf_counter() - t0:.1f} s")
        self.backend, self.backend_knobs = backend, dict(knobs)
        return backend

    def measure(self, case: Case, size: int) -> None:
        if case.kind == "sdp-run":
            if self.backend is not None:  # the command loads its own
                self.backend.close()
                self.backend, self.backend_knobs = None, None
            self.torch._dynamo.reset()
            rate, note, made = sdp_run(
                self.workdir,
                self.model,
                size,
                self.steps,
                case.batch,
                self.run_count,
                case.knobs,
                self.device,
                case.run_args,
            )
            images = [made[i] for i in range(self.count)]
            batch: int | str = case.batch
        else:
            backend = self.backend_for(case.knobs)
            fitter = None
            samples = make_samples(self.program, self.model, case.count or self.count, size, self.steps)
            planned = case.batch
            if case.kind == "auto":
                from stable_discovery.run.autobatch import AUTO_BATCH, BatchFitter

                fitter, planned = BatchFitter(), AUTO_BATCH
                samples = make_samples(self.program, self.model, 2 * AUTO_BATCH, size, self.steps)
            seconds, images, warm_s = timed(backend, samples, planned, self.args.repeat, self.sync, fitter)
            rate = len(samples) / seconds
            note = f"warm-up {warm_s:.1f} s"
            batch = case.batch
            if fitter is not None:
                found = fitter.found()
                batch = f"auto: {', '.join(str(v) for v in found.values())}"
                note += f"; {len(fitter.shrunk)} halvings" if fitter.shrunk else "; 32 fit"
            images = images[: self.count]
        self.record(case, size, rate, note, images, batch)

    def record(
        self, case: Case, size: int, rate: float, note: str, images: list[Any], batch: int | str
    ) -> None:
        import numpy as np

        arrays = [np.asarray(im.convert("RGB"), dtype=np.int16) for im in images]
        black = sum(1 for a in arrays if a.max() == 0)  # NaN latents decode to black
        if black:
            note += f"; {black} black images (NaN)"
        max_diff = mean_diff = None
        if case.reference:
            self.reference[size] = arrays
        elif size in self.reference:
            ref = self.reference[size]
            max_diff = max(int(np.abs(a - r).max()) for a, r in zip(arrays, ref, strict=True))
            mean_diff = float(np.mean([np.abs(a - r).mean() for a, r in zip(arrays, ref, strict=True)]))
        self.rows.append(Row(size, case.name, batch, rate, note, max_diff, mean_diff))
        log(f"{size}  {case.name}: {rate:.3f} images/s ({note})")

    def table(self) -> str:
        peak = self.peak
        lines = [
            f"Device: {self.info}.",
            f"{self.count} images per row ({self.run_count} for sdp run, 64 for --batch auto), "
            f"{self.steps} DDIM steps, CFG 7.5; best of {self.args.repeat} after a warm-up.",
            "UNet floor: FLOPs per image = one UNet forward (FlopCounterMode) x 2 (CFG) x steps; "
            f"dense fp16 peak {peak:g} TFLOPS. Differences: against the reference row's images, "
            "in levels of 255 (max over pixels and channels; mean).",
            "",
            "| size | row | batch | images/s | vs plain loop | vs reference | UNet TFLOPS | % of fp16 peak "
            "| max diff | mean diff | notes |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for size in self.sizes:
            rows = [r for r in self.rows if r.size == size]
            plain = next(
                (r.images_per_s for r in rows if r.case.startswith("plain") and r.images_per_s), None
            )
            ref = next(
                (r.images_per_s for r in rows if r.case.startswith("reference") and r.images_per_s), None
            )
            for r in rows:
                lines.append(self.line(r, plain, ref))
            tf = self.flops[size] / 1e12
            ceiling = (
                f"{peak * 1e12 / self.flops[size]:.2f} at peak" if peak else "peak unknown (--peak-tflops)"
            )
            lines.append(f"| {size} | floor: UNet {tf:.3g} TFLOP per image | | {ceiling} | | | | | | | |")
        if self.smoke:
            lines += [
                "",
                "Smoke test on a CPU: float32 in place of float16; these figures only show the script works.",
            ]
        lines += ["", f"Total time: {time.perf_counter() - self.start:.0f} s."]
        return "\n".join(lines)

    def line(self, r: Row, plain: float | None, ref: float | None) -> str:
        if r.images_per_s is None:
            return f"| {r.size} | {r.case} | {r.batch} | – | – | – | – | – | – | – | {r.note} |"
        achieved = r.images_per_s * self.flops[r.size] / 1e12
        pct = f"{100 * achieved / self.peak:.0f}%" if self.peak else "–"
        vs_plain = f"{r.images_per_s / plain:.2f}x" if plain else "–"
        vs_ref = f"{r.images_per_s / ref:.2f}x" if ref else "–"
        mx = "–" if r.max_diff is None else str(r.max_diff)
        mean = "–" if r.mean_diff is None else f"{r.mean_diff:.2f}"
        return (
            f"| {r.size} | {r.case} | {r.batch} | {r.images_per_s:.3f} | {vs_plain} | {vs_ref} | "
            f"{achieved:.3g} | {pct} | {mx} | {mean} | {r.note} |"
        )


if __name__ == "__main__":
    sys.exit(main())
