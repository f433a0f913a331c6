"""The dummy backend: no torch, no model. A deterministic picture that visibly depends
on the prompt, the seed and the settings, so runs can be screened and tested fast."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

from stable_discovery.backends.base import Batch

__all__ = ["DummyBackend"]


class DummyBackend:
    name = "dummy"

    def __init__(self, draw_text: bool = True, **_: Any) -> None:
        self.draw_text = draw_text

    def describe_model(self, model: str) -> str:
        return f"dummy ({model})"

    def prepare(self, models: Sequence[str]) -> None:
        return None

    def generate(self, batch: Batch) -> list[Any]:
        return [self._image(s, batch.key.width, batch.key.height) for s in batch.samples]

    def close(self) -> None:
        return None

    def _image(self, sample: Any, width: int, height: int) -> Any:
        from PIL import Image, ImageDraw

        settings = sample.settings
        digest = hashlib.blake2b(
            f"{sample.prompt}\x00{sample.negative}\x00{settings['steps']}\x00"
            f"{settings['guidance']}\x00{settings['scheduler']}\x00{settings['model']}".encode(),
            digest_size=16,
        ).digest()
        # the prompt picks the palette, the seed the composition
        base = tuple(digest[0:3])
        accent = tuple(digest[3:6])
        rng = random.Random(f"{sample.seed}:{digest.hex()}")
        im = Image.new("RGB", (width, height), base)
        draw = ImageDraw.Draw(im)
        for _ in range(3 + int(settings["steps"]) % 5):
            x0, y0 = rng.randrange(width), rng.randrange(height)
            r = max(2, rng.randrange(max(3, min(width, height) // 3)))
            colour = tuple((c + rng.randrange(64)) % 256 for c in accent)
            if rng.random() < 0.5:
                draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour)
            else:
                draw.rectangle((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour)
        if self.draw_text and width >= 128:
            text = sample.prompt or "(empty prompt)"
            line_chars = max(8, width // 7)
            lines = [text[i : i + line_chars] for i in range(0, min(len(text), line_chars * 6), line_chars)]
            lines.append(f"seed {sample.seed}  steps {settings['steps']}  cfg {settings['guidance']}")
            y = 4
            for line in lines:
                draw.text((5, y + 1), line, fill=(0, 0, 0))
                draw.text((4, y), line, fill=(255, 255, 255))
                y += 12
        return im
