"""A sample: one prompt with everything needed to make (and remake) its image."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stable_discovery.space.trace import Chosen

__all__ = ["Chosen", "Sample"]


@dataclass(frozen=True)
class Sample:
    """Sample ``index`` of an experiment.

    ``trace`` maps every slot used and every sampled setting to the :class:`Chosen` alternative;
    ``settings`` holds every generation setting's value; ``seed`` is the image seed.
    """

    index: int
    prompt: str
    negative: str
    settings: Mapping[str, Any]
    seed: int
    trace: Mapping[str, Chosen]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--jsonl`` format)."""
        return {
            "index": self.index,
            "prompt": self.prompt,
            "negative": self.negative,
            "settings": dict(self.settings),
            "seed": self.seed,
            "trace": {k: {"index": p.index, "text": p.text} for k, p in self.trace.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sample:
        return cls(
            index=int(data["index"]),
            prompt=str(data["prompt"]),
            negative=str(data.get("negative", "")),
            settings=dict(data.get("settings", {})),
            seed=int(data["seed"]),
            trace={k: Chosen(int(v["index"]), str(v["text"])) for k, v in data.get("trace", {}).items()},
        )
