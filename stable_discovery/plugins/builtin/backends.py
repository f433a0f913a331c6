"""Built-in backends: ``dummy`` (no torch) and ``diffusers`` (Stable Diffusion)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stable_discovery.plugins.hookspecs import hookimpl


def _dummy(**options: Any) -> Any:
    from stable_discovery.backends.dummy import DummyBackend

    return DummyBackend(**options)


def _diffusers(**options: Any) -> Any:
    from stable_discovery.backends.diffusers_backend import DiffusersBackend

    return DiffusersBackend(**options)


@hookimpl
def register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("dummy", _dummy)
    register("diffusers", _diffusers)
