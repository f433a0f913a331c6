"""The plugin manager: built-ins and third-party plugins, registered the same way.

Third-party plugins are installed packages with an entry point in the group
``stable_discovery``. The environment variable ``SDP_PLUGINS`` limits which of them
load: a comma-separated list of plugin names (empty: none). Built-ins always load.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import pluggy

from stable_discovery.errors import UsageError
from stable_discovery.plugins import hookspecs

if TYPE_CHECKING:
    from stable_discovery.sampling.samplers import Sampler

__all__ = [
    "DEFAULT_PLUGINS",
    "ENV_PLUGINS",
    "get_plugin_manager",
    "samplers",
    "backends",
    "sinks",
    "setting_specs",
    "plugin_rows",
    "reset",
    "register",
    "unregister",
    "get_sampler",
    "sampler_names",
]

#: Built-in plugin modules, registered exactly like third-party plugins.
DEFAULT_PLUGINS = (
    "stable_discovery.plugins.builtin.samplers",
    "stable_discovery.plugins.builtin.backends",
    "stable_discovery.plugins.builtin.exploit",
)

ENV_PLUGINS = "SDP_PLUGINS"

_pm: pluggy.PluginManager | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("stable_discovery")
        pm.add_hookspecs(hookspecs)
        for name in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(name), name=name)
        _load_entry_points(pm)
        _pm = pm
    return _pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allowed = os.environ.get(ENV_PLUGINS)
    if allowed is None:
        pm.load_setuptools_entrypoints("stable_discovery")
        return
    wanted = {n.strip() for n in allowed.split(",") if n.strip()}
    if not wanted:
        return
    from importlib.metadata import entry_points

    for ep in entry_points(group="stable_discovery"):
        if ep.name in wanted and pm.get_plugin(ep.name) is None:
            pm.register(ep.load(), name=ep.name)


def register(plugin: Any, name: str | None = None) -> None:
    """Register a plugin object or module at run time (tests, notebooks)."""
    get_plugin_manager().register(plugin, name=name)
    _clear_caches()


def unregister(name: str) -> None:
    get_plugin_manager().unregister(name=name)
    _clear_caches()


def _clear_caches() -> None:
    for fn in (samplers, backends, sinks, setting_specs):
        fn.cache_clear()


def reset() -> None:
    """Forget the plugin manager (tests; after changing ``SDP_PLUGINS``)."""
    global _pm
    _pm = None
    _clear_caches()


def _collect(hook: str) -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}

    def register(name: str, factory: Callable[..., Any]) -> None:
        found[name] = factory

    getattr(get_plugin_manager().hook, hook)(register=register)
    return found


@cache
def samplers() -> dict[str, Callable[[], Any]]:
    return _collect("register_samplers")


@cache
def backends() -> dict[str, Callable[..., Any]]:
    return _collect("register_backends")


@cache
def sinks() -> dict[str, Callable[..., Any]]:
    return _collect("register_sinks")


@cache
def setting_specs() -> tuple[Any, ...]:
    specs: list[Any] = []
    get_plugin_manager().hook.register_settings(register=specs.append)
    return tuple(specs)


def plugin_rows() -> list[dict[str, Any]]:
    """Each registered plugin with the hooks it implements (``sdp plugins``)."""
    pm = get_plugin_manager()
    rows = []
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        dist = dists.get(id(plugin))
        rows.append(
            {
                "name": name,
                "hooks": hooks,
                "version": getattr(dist, "version", None) if dist else None,
                "builtin": name in DEFAULT_PLUGINS,
            }
        )
    return rows


def sampler_names() -> list[str]:
    """The names of every registered sampler, built-in and from plugins."""
    return list(samplers())


def get_sampler(name: str) -> Sampler:
    """A sampler by name (built-in or from a plugin); unknown names raise a UsageError
    that lists the known ones."""
    factory = samplers().get(name)
    if factory is None:
        raise UsageError(f"unknown sampler {name!r}; known samplers: {', '.join(sampler_names())}")
    sampler: Sampler = factory()
    return sampler
