"""Connections that wait too long are closed, and there are never more of them than the
process can hold files for.

* A connection has :attr:`Deadlines.head` seconds to send a whole request head (its
  request line and headers), counted from when the gallery starts waiting for it: an
  idle keep-alive connection and one that trickles its headers byte by byte are both
  closed when the time is up. A body, and writing a response, get deadlines of their
  own. A watchdog thread shuts such sockets down; the blocked read or write returns
  and the connection's thread ends.
* At most :func:`connection_limit` connections are served at once. When a new one
  arrives at the limit, the connection that has waited longest for a request head is
  closed to make room; when every connection is busy, the new one is turned away.
  Either way the gallery keeps answering (a browser opens a new connection).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

__all__ = ["Deadlines", "connection_limit"]


def connection_limit() -> int:
    """How many connections the gallery serves at once: a share of the open-file limit
    that leaves room for each request's database files."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft <= 0:
            soft = 4096
    except (ImportError, OSError, ValueError):
        soft = 1024
    return max(4, min(128, (soft - 24) // 4))


class Deadlines:
    """The connections being waited on, each with the time it must be done by."""

    def __init__(self, head: float = 30.0, body: float = 30.0, write: float = 120.0) -> None:
        self.head = head
        self.body = body
        self.write = write
        self._lock = threading.Lock()
        self._due: dict[Any, float] = {}  # socket → monotonic deadline
        self._waiting_head: set[Any] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="sdp-gallery-deadlines", daemon=True)
        self._thread.start()

    def arm(self, sock: Any, seconds: float, *, head: bool = False) -> None:
        """``sock`` must be done within ``seconds`` (``head``: it is waiting for a
        request head, and may be closed to make room)."""
        with self._lock:
            self._due[sock] = time.monotonic() + seconds
            if head:
                self._waiting_head.add(sock)
            else:
                self._waiting_head.discard(sock)

    def disarm(self, sock: Any) -> None:
        with self._lock:
            self._due.pop(sock, None)
            self._waiting_head.discard(sock)

    def evict_one(self) -> bool:
        """Close the connection that has waited longest for a request head; whether
        there was one."""
        with self._lock:
            if not self._waiting_head:
                return False
            oldest = min(self._waiting_head, key=lambda s: self._due.get(s, 0.0))
            self._waiting_head.discard(oldest)
            self._due.pop(oldest, None)
        _shut(oldest)
        return True

    def close(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [s for s, due in self._due.items() if due <= now]
                for s in late:
                    self._due.pop(s, None)
                    self._waiting_head.discard(s)
            for s in late:
                _shut(s)


def _shut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
