"""The gallery's download: the images a filter shows, as a zip streamed to the browser.

The zip is written straight into the response (HTTP/1.1 chunked transfer encoding), so a
download of 10,000 images needs neither a temporary file nor the whole zip in memory.
Its content is what ``sdp export NAME -o FILE.zip`` writes for the same filters: the
PNGs as they are (their metadata chunks kept) and ``metadata.jsonl``.
"""

from __future__ import annotations

import re
from typing import IO, Any

from stable_discovery.store.database import Store
from stable_discovery.store.export import export_records, write_zip
from stable_discovery.store.filters import Filters

__all__ = ["ChunkedWriter", "send_zip", "zip_name"]


class ChunkedWriter:
    """A write-only stream that sends what it is given as HTTP chunks (buffered)."""

    def __init__(self, raw: IO[bytes], size: int = 1 << 16) -> None:
        self.raw = raw
        self.size = size
        self.buffer = bytearray()
        self.written = 0

    def write(self, data: bytes) -> int:
        self.buffer += data
        self.written += len(data)
        if len(self.buffer) >= self.size:
            self._send()
        return len(data)

    def _send(self) -> None:
        if self.buffer:
            self.raw.write(b"%x\r\n" % len(self.buffer) + bytes(self.buffer) + b"\r\n")
            self.buffer.clear()

    def flush(self) -> None:
        self._send()

    def close(self) -> None:
        """Send what is left and the last, empty chunk."""
        self._send()
        self.raw.write(b"0\r\n\r\n")
        self.raw.flush()


def zip_name(experiment: str, filters: Filters) -> str:
    """The download's file name: the experiment's, marked when filtered."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", experiment)
    return f"{safe}{'' if filters.empty else '-selection'}.zip"


def send_zip(handler: Any, store: Store, name: str, filters: Filters) -> None:
    """Answer ``handler``'s request with the zip of experiment ``name``'s images that
    match ``filters``."""
    exp = store.require(name)
    records = export_records(store.db, exp.id, exp.name, store.experiment_dir(exp.name), filters)
    handler.send_response(200)
    handler.send_header("Content-Type", "application/zip")
    handler.send_header("Content-Disposition", f'attachment; filename="{zip_name(exp.name, filters)}"')
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Cache-Control", "no-store")
    handler.send_header("X-Content-Type-Options", "nosniff")
    handler.end_headers()
    stream = ChunkedWriter(handler.wfile)
    try:
        write_zip(records, stream, note_missing=True)
        stream.close()
    except OSError as exc:  # the browser went away, or a file could not be read
        # the headers are out: no error page can follow, so end the connection
        handler.close_connection = True
        if not isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            handler.server.log(f"gallery: download of {exp.name} stopped: {exc}")
