"""Plugins: the hook specifications (:mod:`.hookspecs`), the plugin manager
(:mod:`.manager`) and the built-in plugins (:mod:`.builtin`), registered exactly like
third-party ones."""

from __future__ import annotations

from stable_discovery.plugins.hookspecs import hookimpl
from stable_discovery.plugins.manager import (
    DEFAULT_PLUGINS,
    ENV_PLUGINS,
    backends,
    get_plugin_manager,
    get_sampler,
    plugin_rows,
    register,
    reset,
    sampler_names,
    samplers,
    setting_specs,
    sinks,
    unregister,
)

__all__ = [
    "DEFAULT_PLUGINS",
    "ENV_PLUGINS",
    "backends",
    "get_plugin_manager",
    "get_sampler",
    "hookimpl",
    "plugin_rows",
    "register",
    "reset",
    "sampler_names",
    "samplers",
    "setting_specs",
    "sinks",
    "unregister",
]
