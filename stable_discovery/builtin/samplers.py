"""Built-in samplers: random, combinatorial, shuffle, legacy."""

from __future__ import annotations

from typing import Any, Callable

from ..hookspecs import hookimpl


@hookimpl
def register_samplers(register: Callable[[str, Callable[[], Any]], None]) -> None:
    from .. import samplers

    for name, factory in samplers.BUILTIN_SAMPLERS.items():
        register(name, factory)
