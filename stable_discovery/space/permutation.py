"""A seeded permutation of ``range(n)`` with random access, for any n (10**30 included).

A balanced Feistel network over the smallest even number of bits that holds n, with
cycle walking to stay inside ``range(n)``. Both directions are O(1) in n.
"""

from __future__ import annotations

import hashlib

__all__ = ["Permutation"]

_ROUNDS = 6


class Permutation:
    def __init__(self, n: int, seed: int) -> None:
        if n < 0:
            raise ValueError("n must be non-negative")
        self.n = n
        bits = max(2, (max(n - 1, 1)).bit_length())
        bits += bits % 2
        self.half = bits // 2
        self.mask = (1 << self.half) - 1
        self.keys = [
            hashlib.blake2b(f"{seed}:{r}".encode(), digest_size=16, person=b"sdp-shuffle").digest()
            for r in range(_ROUNDS)
        ]
        self._nbytes = (self.half + 7) // 8 + 8

    def _f(self, r: int, value: int) -> int:
        h = hashlib.blake2b(
            value.to_bytes(self._nbytes, "little"), digest_size=min(64, self._nbytes), key=self.keys[r]
        ).digest()
        return int.from_bytes(h, "little") & self.mask

    def _encrypt(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for r in range(_ROUNDS):
            left, right = right, left ^ self._f(r, right)
        return (left << self.half) | right

    def _decrypt(self, y: int) -> int:
        left, right = y >> self.half, y & self.mask
        for r in range(_ROUNDS - 1, -1, -1):
            left, right = right ^ self._f(r, left), left
        return (left << self.half) | right

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        x = self._encrypt(i)
        while x >= self.n:
            x = self._encrypt(x)
        return x

    def index(self, value: int) -> int:
        """The position of ``value``: the inverse permutation."""
        if not 0 <= value < self.n:
            raise ValueError(value)
        x = self._decrypt(value)
        while x >= self.n:
            x = self._decrypt(x)
        return x
