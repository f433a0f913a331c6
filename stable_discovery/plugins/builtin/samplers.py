"""Built-in samplers: random, combinatorial, shuffle, legacy."""

from __future__ import annotations

from typing import Any, Callable

from stable_discovery.plugins.hookspecs import hookimpl


@hookimpl
def register_samplers(register: Callable[[str, Callable[[], Any]], None]) -> None:
    from stable_discovery.sampling import samplers

    for name, factory in samplers.BUILTIN_SAMPLERS.items():
        register(name, factory)
