"""Kept for plugins written against stable-discovery 0.1: samplers now live in
:mod:`stable_discovery.sampling`, and ``get_sampler`` in :mod:`stable_discovery.plugins`."""

from __future__ import annotations

from stable_discovery.plugins.manager import get_sampler, sampler_names
from stable_discovery.sampling.samplers import *  # noqa: F403 - the old module's names, re-exported
from stable_discovery.sampling.samplers import __all__ as _sampling_all

__all__ = [*_sampling_all, "get_sampler", "sampler_names"]
