"""Prompt embeddings with A1111 weighting, built by compel (SD 1.x/2.x and SDXL).

The prompt is read with A1111's own algorithm (:mod:`.emphasis`); the weighted pieces go
to compel's ``EmbeddingsProvider``, which tokenizes them, cuts the tokens into 75-token
chunks (each encoded on its own between its start and end tokens and concatenated, so a
long prompt is never cut), and applies the weights to the embeddings. ``BREAK`` starts
a new chunk. Where compel's chunking differs from A1111's, A1111's rule is used: a chunk
that would split a phrase ends after its last comma if that comma is among its last 20
tokens, else at 75 tokens.

Each sample is encoded on its own, so an image never depends on the other prompts of
its batch; a prompt and its negative prompt are padded to the same number of chunks
with the embedding of the empty prompt, as A1111 and compel do.

torch and compel are imported when an encoder is made.
"""

from __future__ import annotations

from typing import Any

from stable_discovery.backends.emphasis import parse_emphasis, plain_text, split_breaks

__all__ = ["CompelEncoder", "make_encoder", "COMMA_BACKTRACK"]

#: How far back (in tokens) a chunk looks for a comma to end at (A1111's setting).
COMMA_BACKTRACK = 20


def _provider_class() -> Any:
    """compel's EmbeddingsProvider with A1111's chunking rule."""
    from compel import EmbeddingsProvider

    class A1111Chunking(EmbeddingsProvider):
        def _find_next_best_split_point(
            self, token_ids: list[int], max_length: int, *args: Any, **kw: Any
        ) -> int:
            if self.truncate_to_model_max_length or len(token_ids) <= max_length:
                return max_length
            tokens = self.tokenizer.convert_ids_to_tokens(token_ids[:max_length])
            for i in range(max_length - 1, max_length - 1 - COMMA_BACKTRACK, -1):
                if tokens[i] == ",</w>":
                    return i + 1
            return max_length

    return A1111Chunking


class CompelEncoder:
    """Embeddings of prompts for an SD 1.x/2.x (one CLIP encoder) or an SDXL (two, and
    a pooled embedding) pipeline."""

    def __init__(self, pipe: Any, sdxl: bool) -> None:
        from compel import ReturnedEmbeddingsType

        provider = _provider_class()
        self.torch = __import__("torch")
        self.sdxl = sdxl
        if sdxl:
            kind = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
            pairs = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
            self.zero_negative = bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
        else:
            kind = ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED
            pairs = [(pipe.tokenizer, pipe.text_encoder)]
            self.zero_negative = False
        self.providers = [
            provider(
                tokenizer=tok,
                text_encoder=enc,
                truncate=False,
                returned_embeddings_type=kind,
                device=enc.device,
                dtype_for_device_getter=lambda _device, enc=enc: enc.dtype,
            )
            for tok, enc in pairs
            if enc is not None
        ]
        self.chunk = self.providers[0].max_token_count

    def _embed(self, text: str) -> tuple[Any, Any]:
        """(token embeddings [1, chunks*77, dim], pooled embedding or None) of one prompt."""
        pieces = parse_emphasis(text)
        groups = split_breaks(pieces)
        # an empty group (an empty prompt, a BREAK at either end) is the empty text
        fragments = [[t for t, _w in g] or [""] for g in groups]
        weights = [[w for _t, w in g] or [1.0] for g in groups]
        parts = [
            p.get_embeddings_for_weighted_prompt_fragments(
                text_batch=fragments, fragment_weights_batch=weights, device=p.device
            )
            for p in self.providers
        ]
        embeds = self.torch.cat(parts, dim=-1)
        pooled = None
        if self.sdxl:
            pooled = self.providers[-1].get_pooled_embeddings(
                [plain_text(pieces)], device=self.providers[-1].device
            )
        return embeds, pooled

    def _empty(self) -> Any:
        return self.torch.cat([p.empty_z for p in self.providers], dim=-1)

    def _pad(self, embeds: Any, length: int) -> Any:
        while embeds.shape[1] < length:
            embeds = self.torch.cat([embeds, self._empty().to(embeds.dtype)], dim=1)
        return embeds

    def encode(self, prompt: str, negative: str) -> dict[str, Any]:
        """The pipeline arguments of one sample (each a batch of one): prompt embeddings,
        negative ones of the same length, and SDXL's pooled embeddings."""
        embeds, pooled = self._embed(prompt)
        if self.zero_negative and not negative:
            neg = self.torch.zeros_like(embeds)
            neg_pooled = self.torch.zeros_like(pooled) if pooled is not None else None
        else:
            neg, neg_pooled = self._embed(negative)
        length = max(embeds.shape[1], neg.shape[1])
        out = {
            "prompt_embeds": self._pad(embeds, length),
            "negative_prompt_embeds": self._pad(neg, length)
            if not self.zero_negative or negative
            else self.torch.zeros((1, length, embeds.shape[-1]), dtype=embeds.dtype, device=embeds.device),
        }
        if self.sdxl:
            out["pooled_prompt_embeds"] = pooled
            out["negative_pooled_prompt_embeds"] = neg_pooled
        return out


def make_encoder(pipe: Any, family_key: str) -> CompelEncoder:
    """The weighting encoder of a loaded pipeline of family ``family_key`` (``sd1``,
    ``sd2`` or ``sdxl``)."""
    return CompelEncoder(pipe, sdxl=family_key == "sdxl")
