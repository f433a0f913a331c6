"""Export a Stable Diffusion pipeline to one single-file checkpoint in the original
(LDM) layout, as model sites distribute them: ``model.diffusion_model.*`` (the UNet),
``first_stage_model.*`` (the VAE), ``cond_stage_model.transformer.*`` (an SD-1-style CLIP
text encoder). It is the inverse of diffusers' own ``convert_ldm_*`` functions for any
UNet depth, so the tiny model exports too; the test loads the file back through
``from_single_file``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESNET.get(head, head)}.{tail}"


def unet_key(key: str, per_level: int, up_attention: set[int]) -> str:
    """The LDM name of a diffusers UNet tensor (``per_level`` = layers_per_block + 1)."""
    for new, old in _UNET_TOP.items():
        if key.startswith(new + "."):
            return old + key[len(new) :]
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + b * per_level + layer
        return (
            f"input_blocks.{index}.0.{_resnet(rest)}"
            if kind == "resnets"
            else f"input_blocks.{index}.1.{rest}"
        )
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
    if m:
        return f"input_blocks.{(int(m[1]) + 1) * per_level}.0.op.{m[2]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        if m[1] == "resnets":
            return f"middle_block.{2 * int(m[2])}.{_resnet(m[3])}"
        return f"middle_block.1.{m[3]}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = b * per_level + layer
        return (
            f"output_blocks.{index}.0.{_resnet(rest)}"
            if kind == "resnets"
            else f"output_blocks.{index}.1.{rest}"
        )
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
    if m:
        b = int(m[1])
        slot = 2 if b in up_attention else 1
        return f"output_blocks.{b * per_level + per_level - 1}.{slot}.conv.{m[2]}"
    raise KeyError(key)


def vae_key(key: str, levels: int) -> str:
    """The LDM name of a diffusers AutoencoderKL tensor."""
    key = key.replace("conv_norm_out", "norm_out")
    m = re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key)
    if m:
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key)
    if m:
        rest = m[2]
        for new, old in _VAE_ATTN.items():
            if rest.startswith(new + "."):
                rest = old + rest[len(new) :]
        return f"{m[1]}.mid.attn_1.{rest}"
    m = re.match(r"encoder\.down_blocks\.(\d+)\.(resnets\.(\d+)|downsamplers\.0)\.(.*)", key)
    if m:
        if m[3] is not None:
            return f"encoder.down.{m[1]}.block.{m[3]}.{m[4].replace('conv_shortcut', 'nin_shortcut')}"
        return f"encoder.down.{m[1]}.downsample.{m[4]}"
    m = re.match(r"decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)|upsamplers\.0)\.(.*)", key)
    if m:
        level = levels - 1 - int(m[1])
        if m[3] is not None:
            return f"decoder.up.{level}.block.{m[3]}.{m[4].replace('conv_shortcut', 'nin_shortcut')}"
        return f"decoder.up.{level}.upsample.{m[4]}"
    return key  # conv_in, conv_out, norm_out, quant_conv, post_quant_conv


def export_single_file(pipe: Any, path: Path) -> Path:
    """Write ``pipe`` (a StableDiffusionPipeline) as one LDM-layout ``.safetensors``."""
    from safetensors.torch import save_file

    unet_config = pipe.unet.config
    per_level = unet_config.layers_per_block + 1
    up_attention = {i for i, t in enumerate(unet_config.up_block_types) if "CrossAttn" in t}
    state: dict[str, Any] = {}
    for k, v in pipe.unet.state_dict().items():
        state["model.diffusion_model." + unet_key(k, per_level, up_attention)] = v
    levels = len(pipe.vae.config.block_out_channels)
    for k, v in pipe.vae.state_dict().items():
        state["first_stage_model." + vae_key(k, levels)] = v
    for k, v in pipe.text_encoder.state_dict().items():
        # original checkpoints name HF CLIP's tensors text_model.*; transformers >= 5.6
        # flattened CLIPTextModel (no text_model wrapper)
        state["cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k)] = v
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path
