"""The plugin hooks of stable-discovery (pluggy project name ``stable_discovery``).

A plugin is a module or object with functions marked ``@hookimpl`` whose names are the
hooks below. Built-in samplers, backends and sinks are registered through these same
hooks (see :mod:`stable_discovery.plugins.manager`). Component hooks receive a ``register``
callback; observer hooks are called with keyword arguments and their results ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["hookspec", "hookimpl"]

hookspec = pluggy.HookspecMarker("stable_discovery")
hookimpl = pluggy.HookimplMarker("stable_discovery")


@hookspec
def register_samplers(register: Callable[[str, Callable[[], Any]], None]) -> None:
    """Register samplers: ``register(name, factory)``.

    ``factory()`` returns an object with ``name``, ``size(program)``,
    ``samples(program, start, stop, seed)`` and ``sample(program, index, seed)``
    (see :class:`stable_discovery.sampling.samplers.Sampler`). The name is what ``@sampler`` and
    ``--sampler`` select.
    """


@hookspec
def register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register image backends: ``register(name, factory)``.

    ``factory(**options)`` returns an object with ``name``, ``describe_model(model)``,
    ``generate(batch)`` (one PIL image per sample of the :class:`Batch`, in order) and
    ``close()``; optionally ``prepare(models)`` to fail fast before any work. The name
    is what ``sdp run --backend`` selects.
    """


@hookspec
def register_sinks(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register sinks, extra outputs of a run: ``register(name, factory)``.

    ``factory(experiment_dir)`` returns an object with ``write(record, image, path)``,
    called once per image after it is stored (``record`` is the stored sample record as a
    dict, ``path`` the PNG file), and ``close()``. ``sdp run --sink NAME`` selects them.
    """


@hookspec
def register_settings(register: Callable[[Any], None]) -> None:
    """Declare template settings: ``register(SettingSpec(...))``.

    A setting no plugin declares is an error in a template; declared ones may be used as
    ``@name = value | value`` and reach backends through each sample's ``settings``.
    """


@hookspec
def image_saved(experiment: str, record: dict, path: str) -> None:
    """Called after each image is stored: experiment name, its sample record, PNG path."""


@hookspec
def run_finished(experiment: str, done: int, count: int, interrupted: bool) -> None:
    """Called when ``sdp run`` ends: how many samples are done out of ``count``."""
