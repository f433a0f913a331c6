"""stable-discovery: explore and exploit Stable Diffusion at scale.

The core (templates → programs → samples) imports no torch. Entry points::

    from stable_discovery import load, loads, get_sampler
    program = load("examples/golden-glasses.sdp")
    for sample in get_sampler("random").samples(program, 0, 10, seed=0):
        print(sample.prompt, sample.trace)

Plugins mark their hook implementations with :data:`hookimpl`. The package's layout
follows the job (docs/architecture.md): ``language`` → ``space`` / ``sampling`` →
``run`` / ``backends`` → ``store`` → ``analysis`` → ``gallery``, with ``plugins`` and
``cli`` at the edges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stable_discovery.errors import SdpError, TemplateError
from stable_discovery.sampling.sample import Chosen, Sample

if TYPE_CHECKING:
    from stable_discovery.language.program import Program, load, loads
    from stable_discovery.plugins.hookspecs import hookimpl
    from stable_discovery.plugins.manager import get_sampler

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load",
    "loads",
    "get_sampler",
    "hookimpl",
    "Program",
    "Sample",
    "Chosen",
    "SdpError",
    "TemplateError",
]


def __getattr__(name: str) -> Any:
    # lazy: importing the package must stay cheap (sdp --help)
    if name in ("load", "loads", "Program"):
        from stable_discovery.language import program

        return getattr(program, name)
    if name == "get_sampler":
        from stable_discovery.plugins.manager import get_sampler

        return get_sampler
    if name == "hookimpl":
        from stable_discovery.plugins.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(name)
