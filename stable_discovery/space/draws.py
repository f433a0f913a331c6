"""Counter-based random numbers: draw ``j`` of sample ``i`` is a pure function of
(seed, i, j), so any sample can be computed on its own (resume, sharding, ``--index``).

The mixing function is SplitMix64's finalizer. Blocks of samples are drawn with numpy;
draws past the block's width, and single samples, use the same arithmetic in Python.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["seed_key", "DrawBlock", "uniform", "sample_key"]

_M = (1 << 64) - 1
_G1 = 0x9E3779B97F4A7C15
_G2 = 0xD1B54A32D192ED03
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_SCALE = 2.0**-53


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * _C1) & _M
    z = ((z ^ (z >> 27)) * _C2) & _M
    return z ^ (z >> 31)


def seed_key(seed: int) -> int:
    """A 64-bit key from any integer seed (negative and huge seeds are fine)."""
    digest = hashlib.blake2b(str(int(seed)).encode(), digest_size=8, person=b"sdp-seed").digest()
    return int.from_bytes(digest, "little")


def sample_key(key: int, index: int) -> int:
    return _mix((key + (index + 1) * _G1) & _M)


def uniform(skey: int, j: int) -> float:
    """Draw ``j`` of the sample whose key is ``skey``: a float in [0, 1)."""
    return (_mix((skey + (j + 1) * _G2) & _M) >> 11) * _SCALE


class DrawBlock:
    """The first ``width`` draws of samples ``start..stop-1``, computed at once."""

    def __init__(self, key: int, start: int, stop: int, width: int) -> None:
        self.key = key
        self.start = start
        self.width = width
        n = stop - start
        if n <= 0:
            self.rows: list[list[float]] = []
            self.keys: list[int] = []
            return
        if n < 4 or width == 0:
            self.keys = [sample_key(key, i) for i in range(start, stop)]
            self.rows = [[uniform(k, j) for j in range(width)] for k in self.keys]
            return
        import numpy as np

        with np.errstate(over="ignore"):
            idx = np.arange(start + 1, stop + 1, dtype=np.uint64)
            z = np.uint64(key) + idx * np.uint64(_G1)
            z = _np_mix(np, z)
            self.keys = z.tolist()
            js = np.arange(1, width + 1, dtype=np.uint64) * np.uint64(_G2)
            u = _np_mix(np, z[:, None] + js[None, :])
            self.rows = ((u >> np.uint64(11)).astype(np.float64) * _SCALE).tolist()


def _np_mix(np: Any, z: Any) -> Any:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_C1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_C2)
    return z ^ (z >> np.uint64(31))
