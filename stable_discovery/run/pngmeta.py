"""PNG metadata: the A1111 ``parameters`` text chunk that Civitai, Infinite Image
Browsing and A1111's PNG Info read, plus the project's own JSON chunk."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from stable_discovery.store.images import RECORD_KEY as JSON_KEY

__all__ = ["a1111_parameters", "png_info", "read_metadata", "JSON_KEY", "SAMPLER_NAMES"]

# JSON_KEY, the key of the project's own PNG text chunk (experiment, index, trace,
# settings, …), is the store's RECORD_KEY: by it the store knows its own images.
#: Our scheduler names as A1111 writes them in ``Sampler:``.
SAMPLER_NAMES = {
    "ddim": "DDIM",
    "pndm": "PLMS",
    "lms": "LMS",
    "euler": "Euler",
    "euler_a": "Euler a",
    "heun": "Heun",
    "dpm++2m": "DPM++ 2M",
    "dpm++2m_karras": "DPM++ 2M Karras",
    "unipc": "UniPC",
    "flow_euler": "Euler",
}


def _quote(value: Any) -> str:
    text = str(value)
    if "," in text or ":" in text or "\n" in text or '"' in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def a1111_parameters(
    prompt: str,
    negative: str,
    settings: Mapping[str, Any],
    seed: int,
    model_name: str,
    lora_hashes: Mapping[str, str] | None = None,
) -> str:
    """The ``parameters`` text as A1111 writes it. The prompt keeps its ``<lora:…>``
    tags; ``lora_hashes`` (name → short hash) become A1111's ``Lora hashes`` field, which
    Civitai and image browsers use to recognise the LoRAs."""
    guidance = float(settings["guidance"])
    cfg = int(guidance) if guidance.is_integer() else guidance
    fields = [
        ("Steps", settings["steps"]),
        ("Sampler", SAMPLER_NAMES.get(str(settings["scheduler"]), str(settings["scheduler"]))),
        ("CFG scale", cfg),
        ("Seed", seed),
        ("Size", f"{settings['width']}x{settings['height']}"),
        ("Model", model_name),
    ]
    if lora_hashes:
        fields.append(("Lora hashes", ", ".join(f"{n}: {h}" for n, h in lora_hashes.items())))
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields))
    return "\n".join(lines)


def png_info(parameters: str, record: Mapping[str, Any]) -> Any:
    """A ``PngInfo`` with both chunks (non-Latin-1 text goes to iTXt automatically)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    info.add_text(JSON_KEY, json.dumps(record, ensure_ascii=False, sort_keys=True))
    return info


def read_metadata(path: Any) -> tuple[str | None, dict | None]:
    """The ``parameters`` text and the project's JSON record of a PNG file."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        text = dict(getattr(im, "text", {}) or {})
    raw = text.get(JSON_KEY)
    return text.get("parameters"), (json.loads(raw) if raw else None)


_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_parameters(text: str) -> dict[str, Any]:
    """Read a ``parameters`` text back the way A1111's PNG Info does."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        if in_negative:
            negative += ("" if not negative else "\n") + line
        else:
            prompt += ("" if not prompt else "\n") + line
    out: dict[str, Any] = {"Prompt": prompt, "Negative prompt": negative}
    for key, value in _PARAM.findall(last):
        if value.startswith('"') and value.endswith('"'):
            value = json.loads(value)
        out[key.strip()] = value
    return out
