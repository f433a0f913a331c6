"""stable-discovery: explore and exploit Stable Diffusion at scale.

The core (templates → programs → samples) imports no torch. Entry points::

    from stable_discovery import load, loads, get_sampler
    program = load("examples/golden-glasses.sdp")
    for sample in get_sampler("random").samples(program, 0, 10, seed=0):
        print(sample.prompt, sample.trace)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load",
    "loads",
    "get_sampler",
    "Program",
    "Sample",
    "Chosen",
    "SdpError",
    "TemplateError",
]

from .errors import SdpError, TemplateError  # noqa: E402
from .sample import Chosen, Sample  # noqa: E402


def __getattr__(name: str) -> Any:
    # lazy: importing the package must stay cheap (sdp --help)
    if name in ("load", "loads", "Program"):
        from . import program

        return getattr(program, name)
    if name == "get_sampler":
        from .samplers import get_sampler

        return get_sampler
    raise AttributeError(name)
