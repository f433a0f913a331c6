"""Tiny model on CPU: planner batches against the original tool's one-image-per-call loop.

The original stable-discovery tool called the Stable Diffusion pipeline once per image
(``pipe(prompt, generator=torch.Generator().manual_seed(seed))``). Here the same samples
go through the planner (``stable_discovery.run.planner.plan``) and the diffusers backend in
batches of several sizes. Both paths use the tiny random-weights model through the real
diffusers code, on CPU with one torch thread (two threads are erratic on a shared
2-core machine). Every batched image is checked against the loop's image: at most one
level of 255 apart.

Usage::

    python bench/bench_tiny_batching.py                    # 32 images, 64x64 and 128x128
    python bench/bench_tiny_batching.py --count 48 --batch 4 8 16 --sizes 64 --repeat 3
    python bench/bench_tiny_batching.py --out bench/results/tiny_batching.md

Figures: images per second, best of ``--repeat`` timed passes after a warm-up pass; the
speedup is over the one-image-per-call loop at the same size.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout first

from stable_discovery.language.program import loads
from stable_discovery.plugins import get_sampler
from stable_discovery.run.planner import plan
from stable_discovery.sampling.sample import Sample

ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = """\
prompt = {subject} {place}, {style}
subject = a golden retriever | a red fox | an old lighthouse | a bowl of ramen | a robot | a castle
place = in the rain | at dawn | on the moon | in a forest | under water
style = oil painting | photo, 35mm | watercolor | pixel art
negative = blurry | low quality | ~
@model = tiny
@steps = {steps}
@guidance = 7.5
@scheduler = ddim
@size = {size}x{size}
"""


def make_samples(count: int, size: int, steps: int, seed: int) -> list[Sample]:
    text = TEMPLATE.replace("{steps}", str(steps)).replace("{size}", str(size))
    program = loads(text, name="<bench>")
    return list(get_sampler("random").samples(program, 0, count, seed))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import diffusers
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores visible; Python {platform.python_version()}, "
        f"torch {torch.__version__}, diffusers {diffusers.__version__}; "
        f"torch threads {torch.get_num_threads()}"
    )


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest wall time of ``repeat`` runs (after one warm-up run) and the last result."""
    result = run()  # warm-up: first-call allocations, scheduler set-up, caches
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=32, help="images per configuration (default 32)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="square sizes (default 64 128)")
    ap.add_argument("--batch", type=int, nargs="+", default=[4, 8, 16, 32], help="planner batch sizes")
    ap.add_argument("--steps", type=int, default=10, help="denoising steps (default 10)")
    ap.add_argument("--repeat", type=int, default=2, help="timed passes per configuration; best counts")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", type=Path, help="also write the results as Markdown here")
    args = ap.parse_args(argv)

    from stable_discovery.backends.diffusers_backend import DiffusersBackend

    backend = DiffusersBackend(device="cpu", threads=args.threads)
    backend.check_available("tiny")  # builds the tiny model if it is not cached yet
    import numpy as np
    import torch

    pipe = backend._pipes["tiny"]  # the very pipeline the backend uses
    info = machine()
    print(info)
    # the machine may be shared: the load says how much the figures can be trusted
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows: list[tuple[int, str, float, float, int]] = []  # size, mode, images/s, speedup, max diff

    for size in args.sizes:
        samples = make_samples(args.count, size, args.steps, args.seed)
        key_count = len({(s.settings["width"], s.settings["steps"]) for s in samples})
        assert key_count == 1

        def naive(samples: list[Sample] = samples, size: int = size) -> list[Any]:
            # the original tool: one pipeline call per image, one generator per call
            images = []
            for s in samples:
                out = pipe(
                    prompt=s.prompt,
                    negative_prompt=s.negative,
                    width=size,
                    height=size,
                    num_inference_steps=args.steps,
                    guidance_scale=7.5,
                    generator=torch.Generator("cpu").manual_seed(s.seed),
                )
                images.extend(out.images)
            return images

        seconds, reference = best_of(args.repeat, naive)
        ref = [np.asarray(im, dtype=np.int16) for im in reference]
        base_rate = len(samples) / seconds
        rows.append((size, "one image per call", base_rate, 1.0, 0))
        print(f"{size}x{size}  one image per call   {base_rate:7.2f} images/s")

        for bs in args.batch:

            def batched(bs: int = bs, samples: list[Sample] = samples) -> list[Any]:
                images: list[Any] = [None] * len(samples)
                for batch in plan(samples, bs):
                    for s, im in zip(batch.samples, backend.generate(batch), strict=False):
                        images[s.index] = im
                return images

            seconds, images = best_of(args.repeat, batched)
            diff = max(
                int(np.abs(np.asarray(im, dtype=np.int16) - r).max())
                for im, r in zip(images, ref, strict=False)
            )
            rate = len(samples) / seconds
            rows.append((size, f"planner, batch {bs}", rate, rate / base_rate, diff))
            print(
                f"{size}x{size}  planner, batch {bs:<4d}   {rate:7.2f} images/s  "
                f"x{rate / base_rate:4.2f}  max diff {diff}/255"
            )
            if diff > 1:
                print(f"error: batched images differ from the loop's by {diff} levels", file=sys.stderr)
                return 1

    backend.close()
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min): {load_start:.1f} at the start, {load_end:.1f} at the end")
    if args.out:
        command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]))] + list(sys.argv[1:]))
        lines = [
            "# Tiny model on CPU: planner batches vs one image per call",
            "",
            f"Machine: {info}.",
            "",
            f"Command: `{command}`",
            "",
            f"{args.count} images per row from the random sampler over a 6x5x4-prompt template "
            f"(plus negatives), DDIM, {args.steps} steps, guidance 7.5, the tiny random-weights "
            "SD-2-shaped model (`--model tiny`) through the real diffusers pipeline. The loop "
            "calls the pipeline once per image, as the original tool did; the planner rows go "
            "through `plan()` and `DiffusersBackend.generate`, one `torch.Generator` per image. "
            f"Best of {args.repeat} timed passes after a warm-up. Max diff: the largest "
            "difference of any pixel channel from the loop's image, in levels of 255.",
            "",
            f"Load average (1 min) on this {os.cpu_count()}-core machine: {load_start:.1f} at the "
            f"start, {load_end:.1f} at the end (other jobs were running when it is above 1).",
            "",
            "| size | mode | images/s | speedup | max diff |",
            "|---|---|---:|---:|---:|",
        ]
        for size, mode, rate, speed, diff in rows:
            lines.append(f"| {size}x{size} | {mode} | {rate:.2f} | {speed:.2f}x | {diff} |")
        lines.append("")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
