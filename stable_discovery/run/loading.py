"""A warm start: the run's backend is made and its models loaded on a thread of their
own while the driver prepares the store (locks the experiment, sweeps what a killed run
left, finds what is done), so that the first batch starts as soon as the model is ready.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from stable_discovery.backends.base import Backend

__all__ = ["BackendLoader", "load_backend"]


def load_backend(factory: Callable[..., Backend], options: dict[str, Any], models: Sequence[str]) -> Backend:
    """Make the backend and let it load the run's models before the first batch (a
    backend with ``prepare(models)``), so that a model that cannot be loaded fails the
    run at once. A backend that fails to prepare is closed."""
    backend = factory(**options)
    prepare = getattr(backend, "prepare", None)
    if prepare is not None:
        try:
            prepare(list(models))
        except BaseException:
            backend.close()
            raise
    return backend


class BackendLoader:
    """:func:`load_backend` on a daemon thread: :meth:`result` waits for the backend (or
    raises what loading raised); :meth:`abandon` lets a run that ends before it needs
    the backend go at once (the thread closes the backend when it is made)."""

    def __init__(
        self, factory: Callable[..., Backend], options: dict[str, Any], models: Sequence[str]
    ) -> None:
        self._args = (factory, dict(options), list(models))
        self._backend: Backend | None = None
        self._error: BaseException | None = None
        self._abandoned = False
        self._lock = threading.Lock()
        #: Seconds the backend took to be made and load its models (once it is ready).
        self.seconds: float | None = None
        self._thread = threading.Thread(target=self._load, name="sdp-backend-loader", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        t0 = time.monotonic()
        backend: Backend | None = None
        try:
            backend = load_backend(*self._args)
        except BaseException as exc:  # noqa: BLE001 - handed to the driver by result()
            self._error = exc
        self.seconds = time.monotonic() - t0
        with self._lock:
            if self._abandoned:
                if backend is not None:
                    backend.close()
                return
            self._backend = backend

    def result(self) -> Backend:
        """The loaded backend (waiting for it), or the error loading raised."""
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._backend is None:  # pragma: no cover - abandoned, or result() called twice
            raise RuntimeError("the backend was handed over or abandoned already")
        backend, self._backend = self._backend, None
        return backend

    def abandon(self) -> None:
        """The run does not need the backend: close it (now, or once it is made).
        After :meth:`result` handed the backend over, nothing happens."""
        with self._lock:
            self._abandoned = True
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()
