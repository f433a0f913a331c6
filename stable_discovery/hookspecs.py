"""Kept for plugins written against stable-discovery 0.1: the hook marker and
specifications now live in :mod:`stable_discovery.plugins.hookspecs`
(``from stable_discovery import hookimpl``)."""

from __future__ import annotations

from stable_discovery.plugins.hookspecs import *  # noqa: F403 - the old module's names, re-exported
from stable_discovery.plugins.hookspecs import __all__ as __all__
