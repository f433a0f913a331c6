"""Tiny random-weight pipelines of the other model families: ``tiny-sdxl``,
``tiny-sd3``, ``tiny-flux`` and ``tiny-pixart``, next to the SD-2-shaped ``tiny``
(:mod:`.tiny`).

Each is built from the real diffusers and transformers classes with the shapes of its
family kept where they matter (SDXL's two CLIP text encoders, pooled embeddings and
micro-conditioning; SD 3's three text encoders and flow matching; Flux's packed latents
and guidance embedding; PixArt's T5 encoder and AdaLN-single transformer), every width
shrunk to a few channels, as diffusers' own test suite builds them. The T5 tokenizer is
a small Unigram vocabulary built with the ``tokenizers`` library and saved as a
``T5TokenizerFast``: nothing is downloaded.

torch, diffusers and transformers are imported inside functions only.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

__all__ = ["FAMILY_BUILDERS", "t5_tokenizer"]


def t5_tokenizer() -> Any:
    """A small T5 tokenizer (Unigram over letters, digits, punctuation and a few words),
    built locally with ``tokenizers``."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    # transformers 5 has one T5Tokenizer (tokenizers-backed); 4.x calls it T5TokenizerFast
    fast: Any = getattr(transformers, "T5TokenizerFast", None) or transformers.T5Tokenizer

    chars = string.ascii_letters + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in chars] + [("\u2581" + c, -4.0) for c in chars]
    pieces += [("\u2581" + w, -3.0) for w in ("the", "a", "of", "and", "in", "fox", "cat", "dog", "red")]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return fast(
        tokenizer_object=tok,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=512,
    )


def _t5_encoder(tokenizer: Any, d_model: int = 32) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=d_model,
            d_ff=37,
            d_kv=8,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )


def _clip_encoder(tokenizer: Any, with_projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # the shape diffusers' own tests use
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
    )
    return CLIPTextModelWithProjection(config) if with_projection else CLIPTextModel(config)


def _vae(latent_channels: int = 4, flow: bool = False) -> Any:
    """An AutoencoderKL with the scale factor 8 of every family here."""
    from diffusers import AutoencoderKL

    extra: dict[str, Any] = {}
    if flow:  # SD 3 and Flux: no quant convs, a shift factor
        extra = {
            "use_quant_conv": False,
            "use_post_quant_conv": False,
            "shift_factor": 0.0609,
            "scaling_factor": 1.5035,
        }
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=64,
        **extra,
    )


def build_sdxl(seed: int, clip_tokenizer: Any) -> Any:
    """SDXL base: a UNet with ``text_time`` added conditioning over two CLIP encoders."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six size numbers + the pooled embedding
        cross_attention_dim=64,  # both encoders' hidden states side by side
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = _vae()
    torch.manual_seed(seed + 2)
    text_encoder = _clip_encoder(clip_tokenizer, with_projection=False)
    torch.manual_seed(seed + 3)
    text_encoder_2 = _clip_encoder(clip_tokenizer, with_projection=True)
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer,
        tokenizer_2=clip_tokenizer,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def build_sd3(seed: int, clip_tokenizer: Any) -> Any:
    """SD 3: an MMDiT transformer over two CLIP encoders and a T5 encoder, flow matching."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    t5_tok = t5_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,  # both CLIP projections side by side
        out_channels=4,
        pos_embed_max_size=32,
    )
    torch.manual_seed(seed + 1)
    vae = _vae(flow=True)
    torch.manual_seed(seed + 2)
    text_encoder = _clip_encoder(clip_tokenizer, with_projection=True)
    torch.manual_seed(seed + 3)
    text_encoder_2 = _clip_encoder(clip_tokenizer, with_projection=True)
    torch.manual_seed(seed + 4)
    text_encoder_3 = _t5_encoder(t5_tok)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=clip_tokenizer,
        text_encoder_3=text_encoder_3,
        tokenizer_3=t5_tok,
    )


def build_flux(seed: int, clip_tokenizer: Any) -> Any:
    """Flux (dev-like: guidance embedded, no negative prompt): a CLIP and a T5 encoder,
    2x2-packed latents, flow matching."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    t5_tok = t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,  # one latent channel x the 2x2 packing
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )
    torch.manual_seed(seed + 1)
    vae = _vae(latent_channels=1, flow=True)
    torch.manual_seed(seed + 2)
    text_encoder = _clip_encoder(clip_tokenizer, with_projection=False)
    torch.manual_seed(seed + 3)
    text_encoder_2 = _t5_encoder(t5_tok)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tok,
        transformer=transformer,
    )


def build_pixart(seed: int, clip_tokenizer: Any) -> Any:
    """PixArt-Σ: a DiT with AdaLN-single over a T5 encoder."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    del clip_tokenizer  # PixArt reads T5 only
    t5_tok = t5_tokenizer()
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        sample_size=8,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,  # PixArt learns the variance: twice the latent channels
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    torch.manual_seed(seed + 1)
    vae = _vae()
    torch.manual_seed(seed + 2)
    text_encoder = _t5_encoder(t5_tok)
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.0001, beta_end=0.02, beta_schedule="linear", prediction_type="epsilon"
    )
    return PixArtSigmaPipeline(
        tokenizer=t5_tok, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )


#: Model name → the function that builds its pipeline (``seed``, the CLIP tokenizer).
FAMILY_BUILDERS: dict[str, Callable[[int, Any], Any]] = {
    "tiny-sdxl": build_sdxl,
    "tiny-sd3": build_sd3,
    "tiny-flux": build_flux,
    "tiny-pixart": build_pixart,
}
