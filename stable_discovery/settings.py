"""Kept for plugins written against stable-discovery 0.1: settings now live in
:mod:`stable_discovery.language.settings`."""

from __future__ import annotations

from stable_discovery.language.settings import *  # noqa: F403 - the old module's names, re-exported
from stable_discovery.language.settings import __all__ as __all__
