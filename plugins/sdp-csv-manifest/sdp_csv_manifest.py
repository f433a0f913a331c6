"""Example third-party plugin for stable-discovery: the ``csv`` sink.

``sdp run TEMPLATE --sink csv`` appends one row per stored image to ``manifest.csv`` in
the experiment's folder: index, file, seed, prompt, negative prompt, and one column per
slot of the trace. Install with ``pip install -e plugins/sdp-csv-manifest``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stable_discovery.plugins.hookspecs import hookimpl

FIELDS = ["index", "file", "seed", "prompt", "negative", "trace"]


class CsvManifest:
    """Writes rows as images arrive; the header once per file."""

    def __init__(self, experiment_dir: Path) -> None:
        self.path = Path(experiment_dir) / "manifest.csv"
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.handle = self.path.open("a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        if new:
            self.writer.writerow(FIELDS)

    def write(self, record: dict, image: Any, path: Path) -> None:
        trace = "; ".join(f"{k}={v['text']}" for k, v in record["trace"].items())
        self.writer.writerow(
            [record["index"], Path(path).name, record["seed"], record["prompt"], record["negative"], trace]
        )

    def close(self) -> None:
        self.handle.close()


@hookimpl
def register_sinks(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("csv", CsvManifest)
