"""The backend protocol and the batch it receives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from stable_discovery.errors import SdpError
from stable_discovery.language.loras import LoraTagError, lora_key
from stable_discovery.sampling.sample import Sample

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

__all__ = ["GenerationKey", "Batch", "Backend", "BackendError", "OutOfMemory"]


class BackendError(SdpError):
    """A backend cannot do its work (model unreachable, no GPU, …). Exit status 1.

    The message names what was tried and the way out.
    """

    exit_code = 1


class OutOfMemory(BackendError):
    """A batch did not fit in the device's memory. ``sdp run --batch auto`` catches it
    and makes the batch in halves; otherwise the user is told to use a smaller batch.
    A backend that raises it has given the memory of the failed attempt back."""


@dataclass(frozen=True)
class GenerationKey:
    """What samples must share to be generated in one call: the settings, the LoRA set
    of their prompts (``<lora:NAME:WEIGHT>`` tags: (name, weight) pairs sorted by name,
    applied to the whole call) and the prompt weighting mode (``a1111`` or ``none``)."""

    model: str
    width: int
    height: int
    steps: int
    guidance: float
    scheduler: str
    loras: tuple[tuple[str, float], ...] = ()
    weighting: str = "a1111"

    @classmethod
    def of(cls, sample: Sample) -> GenerationKey:
        """The key of a sample. A LoRA tag that does not read, or a LoRA tagged twice,
        is a :class:`BackendError` naming the sample."""
        s = sample.settings
        try:
            loras = lora_key(sample.prompt)
        except LoraTagError as exc:
            raise BackendError(f"sample {sample.index}: {exc} (prompt: {sample.prompt!r})") from None
        return cls(
            str(s["model"]),
            int(s["width"]),
            int(s["height"]),
            int(s["steps"]),
            float(s["guidance"]),
            str(s["scheduler"]),
            loras,
            str(s.get("weighting", "a1111")),
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
