"""Ctrl-C during a run: once asks the run to stop after the current batch, twice stops it
at once."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, TextIO

__all__ = ["StopOnSigint", "STOP_NOTICE"]

#: What the first Ctrl-C prints.
STOP_NOTICE = "\nstopping after the current batch (Ctrl-C again to stop now)\n"


class StopOnSigint:
    """Within the ``with`` block, the first SIGINT sets ``stop`` and prints
    :data:`STOP_NOTICE` (to ``notice``, default standard error at that moment); the
    second raises :class:`KeyboardInterrupt`. The previous handler is restored at the
    end. Outside the main thread, where Python takes no signal handler, it does nothing."""

    def __init__(self, stop: threading.Event, notice: TextIO | None = None) -> None:
        self.stop = stop
        self.notice = notice
        self._previous: Any = None

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        (self.notice if self.notice is not None else sys.stderr).write(STOP_NOTICE)
