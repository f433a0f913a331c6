"""Executors: where an experiment's batches are generated.

``local`` (the default, :class:`stable_discovery.run.runner.LocalExecutor`): one backend in
this process. ``ray`` (:class:`.ray_executor.RayExecutor`): workers on a local Ray or a
Ray cluster. Whatever the executor, the driver writes images and rows, so resuming and
exactly-once hold the same.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, TextIO

from stable_discovery.errors import UsageError

__all__ = ["EXECUTORS", "make_executor"]

#: The names ``sdp run --executor`` takes.
EXECUTORS = ("local", "ray")


def make_executor(
    kind: Optional[str],
    backend_name: str,
    backend_options: Optional[dict[str, Any]] = None,
    address: Optional[str] = None,
    workers: Optional[int] = None,
    backend_factory: Optional[Callable[..., Any]] = None,
    log: Optional[TextIO] = None,
) -> Any:
    """The executor ``sdp run`` asked for; ``None`` for the local one (the runner's
    default). Raises :class:`UsageError` for options that do not go together, and for
    ``ray`` without Ray installed (saying how to install it)."""
    kind = kind or "local"
    if kind not in EXECUTORS:
        raise UsageError(f"unknown executor {kind!r}; executors: {', '.join(EXECUTORS)}")
    if kind == "local":
        given = [flag for flag, value in (("--address", address), ("--workers", workers)) if value is not None]
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
