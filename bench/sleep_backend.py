"""A stand-in for a GPU: a backend that sleeps a fixed time per image (the GPU busy,
this process idle) and returns 512x512 pictures that compress like real ones.

``sdp run`` end to end against the backend alone (``bench/bench_pipeline.py``) shows
what the run adds to generation: with the writer pipeline, PNG encoding and store
writes overlap the sleep, as they overlap a GPU's work.

Use it from Python (``SleepBackend(seconds=0.05)``) or register it as a plugin
(``stable_discovery.plugins.register(sleep_backend)``): then ``sdp run --backend sleep``
works in the same process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from stable_discovery.backends.base import Batch
from stable_discovery.plugins.hookspecs import hookimpl

__all__ = ["SleepBackend", "picture"]

#: Seconds per image: 50 ms is SD 2.1 at 512x512 on a mid-range GPU (20 images/s).
DEFAULT_SECONDS = 0.05


def picture(seed: int, width: int, height: int) -> Any:
    """A deterministic picture: smooth colour gradients plus fine noise, which PNG
    compresses a little worse than a Stable Diffusion image (about 2.1 bytes a pixel
    at compression level 1, against 3 for pure noise), so encoding costs no less."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b, c = rng.uniform(0.002, 0.02, 3)
    base = np.stack([np.sin(x * a + y * b), np.cos(y * c - x * a), np.sin((x + y) * b * 0.7)], axis=-1)
    noise = rng.normal(0.0, 6.0, (height, width, 3)).astype(np.float32)
    pixels = (127.5 + 110.0 * base + noise).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


class SleepBackend:
    """Sleeps ``seconds`` per image of a batch, then returns one picture per sample."""

    name = "sleep"

    def __init__(self, seconds: float = DEFAULT_SECONDS, busy: float = 0.0, **_options: Any) -> None:
        self.seconds = float(seconds)
        #: the share of each image's time spent running Python (holding the GIL), as a
        #: thread launching a GPU's kernels does; the rest is slept
        self.busy = float(busy)
        if self.busy:
            _rounds_per_second()
        self._cache: dict[tuple[int, int, int], Any] = {}

    def describe_model(self, model: str) -> str:
        return "sleep"

    def generate(self, batch: Batch) -> Sequence[Any]:
        total = self.seconds * len(batch.samples)
        _spin(total * self.busy)
        time.sleep(total * (1.0 - self.busy))
        key = batch.key
        # pictures are made once per (seed mod 16, size) and copied: making one costs
        # about 10 ms of CPU, which a GPU backend does not spend
        out = []
        for sample in batch.samples:
            slot = (sample.seed % 16, key.width, key.height)
            if slot not in self._cache:
                self._cache[slot] = picture(slot[0], key.width, key.height)
            out.append(self._cache[slot].copy())
        return out

    def close(self) -> None:
        self._cache.clear()


def _spin(seconds: float) -> None:
    """Run as much Python as takes ``seconds`` when nothing else wants the GIL (a fixed
    amount of work, so that threads taking the GIL away make it take longer)."""
    for _ in range(round(seconds * _rounds_per_second())):
        sum(range(200))


_RATE: list[float] = []


def _rounds_per_second() -> float:
    """How many rounds of :func:`_spin`'s work one second holds on this machine
    (measured once, before anything else runs)."""
    if not _RATE:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(2000):
                sum(range(200))
            best = min(best, time.perf_counter() - t0)
        _RATE.append(2000 / best)
    return _RATE[0]


def _factory(**options: Any) -> SleepBackend:
    """The plugin's factory: ``$SDP_SLEEP_MS`` milliseconds per image (default 50), of
    which the share ``$SDP_SLEEP_BUSY`` (default 0) runs Python."""
    ms = os.environ.get("SDP_SLEEP_MS", "").strip()
    busy = os.environ.get("SDP_SLEEP_BUSY", "").strip()
    return SleepBackend(float(ms) / 1000 if ms else DEFAULT_SECONDS, float(busy or 0), **options)


@hookimpl
def register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("sleep", _factory)
