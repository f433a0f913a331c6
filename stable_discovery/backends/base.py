"""The backend protocol and the batch it receives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from stable_discovery.errors import SdpError
from stable_discovery.sampling.sample import Sample

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

__all__ = ["GenerationKey", "Batch", "Backend", "BackendError"]


class BackendError(SdpError):
    """A backend cannot do its work (model unreachable, no GPU, …). Exit status 1.

    The message names what was tried and the way out.
    """

    exit_code = 1


@dataclass(frozen=True)
class GenerationKey:
    """What samples must share to be generated in one call."""

    model: str
    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str

    @classmethod
    def of(cls, sample: Sample) -> GenerationKey:
        s = sample.settings
        return cls(
            str(s["model"]),
            int(s["width"]),
            int(s["height"]),
            int(s["steps"]),
            float(s["guidance"]),
            str(s["scheduler"]),
        )


@dataclass(frozen=True)
class Batch:
    """Samples that share a :class:`GenerationKey`; each keeps its own seed."""

    key: GenerationKey
    samples: tuple[Sample, ...]


@runtime_checkable
class Backend(Protocol):
    """A backend. ``generate`` returns one PIL image per sample, in order.

    Each image must depend only on its own sample (prompt, negative, seed, settings),
    never on the other samples of its batch: one random generator per image.
    """

    name: str

    def describe_model(self, model: str) -> str:
        """The model's name as recorded in PNG metadata (``Model: …``)."""

    def generate(self, batch: Batch) -> Sequence[Image]:
        """Images for the batch's samples, in order."""

    def close(self) -> None:
        """Free what the backend holds (models, GPU memory)."""
