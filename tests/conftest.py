"""Fixtures and hooks of the test suite (shared helpers: :mod:`tests.helpers`)."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pytest

from stable_discovery import plugins
from tests.helpers import write_wildcards

HERE = Path(__file__).parent

#: SDP_PLUGINS as it was before the session.
_SAVED_PLUGINS = pytest.StashKey[str | None]()

#: Markers (registered in pyproject.toml) for whole modules, and for single tests of
#: modules whose other tests need none; other tests carry ``@pytest.mark.slow`` in place.
#: ``python -m pytest -m "not slow"`` is the fast inner loop.
MARKERS = {
    "test_crash.py": ("slow",),  # kills and resumes real `sdp run` processes
    "test_differential.py": ("slow",),  # Hypothesis against dynamicprompts
    "test_diffusers_backend.py": ("torch", "slow"),
    "test_e2e_tiny.py": ("torch", "slow"),
    "test_gallery_browser.py": ("browser", "slow"),
    "test_properties.py": ("slow",),  # Hypothesis against a reference expander
    "test_ray.py": ("ray", "slow"),
    "test_ray.py::test_tiny_model_on_ray_leaves_the_same_store": ("torch",),
    "test_ray_scheduler.py": ("ray",),  # a stand-in for Ray, but Ray's exception classes
    "test_safety_crash.py": ("slow",),  # kills real and forked runs while the gallery rates
    "test_speed_knobs.py": ("torch", "slow"),
    "test_wheel.py": ("slow",),  # builds the wheel
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh ``SDP_CACHE_DIR`` for a module (the tiny models are built into it once)."""
    root = tmp_path_factory.mktemp("sdp-cache")
    old = os.environ.get("SDP_CACHE_DIR")
    os.environ["SDP_CACHE_DIR"] = str(root)
    yield root
    if old is None:
        os.environ.pop("SDP_CACHE_DIR", None)
    else:
        os.environ["SDP_CACHE_DIR"] = old


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for key in MARKERS:
        if not (HERE / key.split("::")[0]).is_file():
            raise pytest.UsageError(f"tests/conftest.py MARKERS names a missing module: {key}")
    for item in items:
        path = Path(item.path)
        if path.parent != HERE:
            continue
        test = getattr(item, "originalname", item.name)  # without the parameters
        for key in (path.name, f"{path.name}::{test}"):
            for name in MARKERS.get(key, ()):
                item.add_marker(name)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``-m``, a module that no test of it can match is not even imported: the
    fast inner loop (``-m "not slow"``) then skips importing torch, Ray and Hypothesis
    strategies. Pytest deselects tests by their markers afterwards as usual."""
    expression = config.getoption("markexpr")
    marks = MARKERS.get(collection_path.name)
    if not expression or marks is None or collection_path.parent != HERE:
        return None
    names = set(re.findall(r"[A-Za-z_]\w*", expression)) - {"and", "or", "not"}
    try:
        code = compile(expression, "-m", "eval")
        # any test of the module has the module's markers and maybe more of its own
        for extra in itertools.chain.from_iterable(
            itertools.combinations(sorted(names), n) for n in range(len(names) + 1)
        ):
            present = set(marks) | set(extra)
            if eval(code, {"__builtins__": {}}, {n: n in present for n in names}):
                return None
    except Exception:  # noqa: BLE001 - an expression Python cannot read: collect as usual
        return None
    return True


@pytest.fixture
def wildcards(tmp_path: Path) -> Callable[[Mapping[str, Iterable[str] | str]], Path]:
    """A factory: ``wildcards({"colours": ["red", "blue"]})`` → the folder."""
    counter = [0]

    def make(files: Mapping[str, Iterable[str] | str]) -> Path:
        counter[0] += 1
        return write_wildcards(tmp_path / f"wildcards{counter[0]}", files)

    return make
