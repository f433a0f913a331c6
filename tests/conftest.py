"""Fixtures and hooks of the test suite (shared helpers: :mod:`tests.helpers`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest

from stable_discovery import plugins
from tests.helpers import write_wildcards

#: SDP_PLUGINS as it was before the session.
_SAVED_PLUGINS = pytest.StashKey[str | None]()


def pytest_configure(config: pytest.Config) -> None:
    # The suite tests the built-in plugins: whatever third-party plugins are installed
    # stay unloaded (SDP_PLUGINS empty), here and in every `sdp` a test starts. Tests
    # of installed plugins start `sdp` with an environment of their own.
    config.stash[_SAVED_PLUGINS] = os.environ.get(plugins.ENV_PLUGINS)
    os.environ[plugins.ENV_PLUGINS] = ""
    plugins.reset()


def pytest_unconfigure(config: pytest.Config) -> None:
    saved = config.stash.get(_SAVED_PLUGINS, None)
    if saved is None:
        os.environ.pop(plugins.ENV_PLUGINS, None)
    else:
        os.environ[plugins.ENV_PLUGINS] = saved
    plugins.reset()


@pytest.fixture
def wildcards(tmp_path: Path) -> Callable[[Mapping[str, Iterable[str] | str]], Path]:
    """A factory: ``wildcards({"colours": ["red", "blue"]})`` → the folder."""
    counter = [0]

    def make(files: Mapping[str, Iterable[str] | str]) -> Path:
        counter[0] += 1
        return write_wildcards(tmp_path / f"wildcards{counter[0]}", files)

    return make
