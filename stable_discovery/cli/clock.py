"""When the ``sdp`` command started, for ``sdp run``'s time to the first image: the
process's own start when ``sdp`` (or ``python -m stable_discovery``) runs, so that
Python's start counts too; ``None`` when the command line is called from Python."""

from __future__ import annotations

import os
import time

__all__ = ["mark_process_start", "command_started"]

_started: float | None = None


def mark_process_start() -> None:
    """Note the process's start (Linux: from ``/proc``; elsewhere: now)."""
    global _started
    now = time.monotonic()
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])  # field 22: starttime
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        age = 0.0
    _started = now - age if 0 <= age < 60 else now


def command_started() -> float:
    """The command's start as a ``time.monotonic()`` reading: the process's, once
    marked, else now."""
    return _started if _started is not None else time.monotonic()
