"""Executors: where an experiment's batches are generated.

``local`` (the default, :class:`stable_discovery.run.runner.LocalExecutor`): one backend in
this process. ``ray`` (:class:`.ray_executor.RayExecutor`): workers on a local Ray or a
Ray cluster. Whatever the executor, the driver writes images and rows, so resuming and
exactly-once hold the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

from stable_discovery.errors import UsageError

__all__ = ["EXECUTORS", "make_executor"]

#: The names ``sdp run --executor`` takes.
EXECUTORS = ("local", "ray")


def make_executor(
    kind: str | None,
    backend_name: str,
    backend_options: dict[str, Any] | None = None,
    address: str | None = None,
    workers: int | None = None,
    backend_factory: Callable[..., Any] | None = None,
    log: TextIO | None = None,
) -> Any:
    """The executor ``sdp run`` asked for; ``None`` for the local one (the runner's
    default). Raises :class:`UsageError` for options that do not go together, and for
    ``ray`` without Ray installed (saying how to install it)."""
    kind = kind or "local"
    if kind not in EXECUTORS:
        raise UsageError(f"unknown executor {kind!r}; executors: {', '.join(EXECUTORS)}")
    if kind == "local":
        given = [
            flag for flag, value in (("--address", address), ("--workers", workers)) if value is not None
        ]
        if given:
            raise UsageError(f"{' and '.join(given)} go with --executor ray")
        return None
    from stable_discovery.run.ray_executor import RayExecutor

    return RayExecutor(
        backend_name=backend_name,
        backend_options=backend_options,
        address=address,
        workers=workers,
        backend_factory=backend_factory,
        log=log,
    )
