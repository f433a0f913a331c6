"""What the ``diffusers`` backend does with a loaded pipeline, family by family: a small
strategy object per family (:class:`FamilyRunner`) that checks a batch against what the
model can do, turns prompts into the pipeline's inputs (text, or compel's weighted
embeddings) and adds the family's own call arguments.

Knobs that change how a pipeline runs (compilation, memory format, precision) belong
to the backend; what differs between families belongs here.

torch is used only through the pipeline and :mod:`.encoders`; nothing heavy is
imported at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stable_discovery.backends.base import BackendError, GenerationKey
from stable_discovery.backends.emphasis import parse_emphasis
from stable_discovery.backends.families import FAMILIES, Family, ModelInfo

__all__ = ["FamilyRunner", "runner_for", "group_inputs", "has_emphasis"]


def has_emphasis(text: str) -> bool:
    """Whether a prompt uses A1111 weighting: a weight other than 1, or ``BREAK``."""
    return any(w != 1.0 for _t, w in parse_emphasis(text))  # BREAK pieces weigh -1


def _unescaped(text: str) -> str:
    """The prompt as A1111 reads it when it has no weights (``\\(`` is ``(``)."""
    return "".join(t for t, _w in parse_emphasis(text))


class FamilyRunner:
    """A loaded pipeline of one family, with what the backend needs to drive it."""

    def __init__(self, pipe: Any, info: ModelInfo) -> None:
        if info.family is None:  # pragma: no cover - the backend resolves the family first
            raise ValueError("a runner needs the model's family")
        self.pipe = pipe
        self.info = info
        self.family: Family = info.family
        self._encoder: Any = None

    # -- checks ---------------------------------------------------------------------

    def check(self, key: GenerationKey, negatives: Sequence[str]) -> None:
        """A :class:`BackendError` for what this model cannot do, saying what to change."""
        fam, model = self.family, key.model
        if key.scheduler not in fam.schedulers:
            raise BackendError(
                f"scheduler {key.scheduler!r} does not apply to {fam.label} models such as {model!r}; "
                f"use one of: {', '.join(fam.schedulers)} (leave @scheduler unset for the "
                f"family's default, {fam.defaults['scheduler']})"
            )
        if not fam.negative and any(negatives):
            raise BackendError(
                f"{fam.label} models such as {model!r} take no negative prompt (they are guidance-"
                "distilled: there is no classifier-free guidance to steer away from it). Remove "
                "`negative =` from the template, or compare with a model that takes one"
            )
        if not self.info.guidance and key.guidance != 0:
            raise BackendError(
                f"{model!r} has no guidance ({fam.label} without a guidance embedding, such as "
                f"FLUX.1-schnell): @guidance {key.guidance:g} would be ignored. Remove @guidance "
                "(its default is 0 for this model) or set @guidance = 0"
            )

    # -- inputs ---------------------------------------------------------------------

    def inputs(
        self, prompts: Sequence[str], negatives: Sequence[str], weighting: bool
    ) -> list[dict[str, Any]]:
        """The pipeline inputs of each sample: text, or (weighting on, for a family that
        supports it) the prompt embeddings compel builds."""
        if weighting and self.family.weighting:
            encoder = self._weighting_encoder()
            return [encoder.encode(p, n) for p, n in zip(prompts, negatives, strict=True)]
        if weighting:
            prompts = [self._plain(p) for p in prompts]
            negatives = [self._plain(n) for n in negatives]
        out: list[dict[str, Any]] = []
        for p, n in zip(prompts, negatives, strict=True):
            out.append({"prompt": p, "negative_prompt": n} if self.family.negative else {"prompt": p})
        return out

    def _plain(self, text: str) -> str:
        if has_emphasis(text):
            raise BackendError(
                f"prompt weighting ((word:1.3), (word), [word], BREAK) is built for SD 1.x/2.x and "
                f"SDXL models; {self.info.model!r} is {self.family.label}, whose text encoders would "
                f"read the brackets as text: {text!r}. Set @weighting = none to send the prompt "
                "as it is, or remove the weights"
            )
        return _unescaped(text)

    def _weighting_encoder(self) -> Any:
        if self._encoder is None:
            from stable_discovery.backends.encoders import make_encoder

            try:
                self._encoder = make_encoder(self.pipe, self.family.key)
            except ImportError as e:
                raise BackendError(
                    f"prompt weighting needs compel ({e}); pip install -e '.[diffusers]', "
                    "or set @weighting = none"
                ) from None
        return self._encoder

    def extra(self) -> dict[str, Any]:
        """Call arguments of the family beyond the common ones."""
        if self.family.key == "pixart":
            sample = getattr(self.pipe.transformer.config, "sample_size", 0)
            # resolution binning needs one of PixArt's own sizes (256 to 2048 px)
            return {"use_resolution_binning": sample in (32, 64, 128, 256), "clean_caption": False}
        return {}


def runner_for(pipe: Any, info: ModelInfo) -> FamilyRunner:
    """The family runner of a loaded pipeline; the family comes from ``info`` or, for a
    model whose family was not known before loading, from the pipeline's class."""
    if info.family is None:
        name = type(pipe).__name__
        family = next((f for f in FAMILIES if name in f.pipelines and f.key != "sd1"), None)
        if family is None:
            raise BackendError(
                f"model {info.model!r} is a {name}; the diffusers backend runs text-to-image "
                f"models of these families: {', '.join(f.label for f in FAMILIES)}"
            )
        from dataclasses import replace

        info = replace(info, family=family, pipeline=name, defaults=dict(family.defaults))
    return FamilyRunner(pipe, info)


def group_inputs(inputs: Sequence[dict[str, Any]]) -> list[tuple[list[int], dict[str, Any]]]:
    """Samples whose inputs can share one pipeline call (embeddings of the same length),
    each group as (sample positions, the batched inputs)."""
    import torch

    groups: dict[tuple, list[int]] = {}
    for i, item in enumerate(inputs):
        shape = tuple((k, tuple(v.shape)) for k, v in sorted(item.items()) if hasattr(v, "shape"))
        groups.setdefault(shape, []).append(i)
    out = []
    for positions in groups.values():
        merged: dict[str, Any] = {}
        for name in inputs[positions[0]]:
            values = [inputs[i][name] for i in positions]
            if values[0] is None:
                merged[name] = None
            elif hasattr(values[0], "shape"):
                merged[name] = torch.cat(values, dim=0)
            else:
                merged[name] = list(values)
        out.append((positions, merged))
    return out
