"""Helpers shared by the template benchmarks (bench_sampling, bench_wildcard_parse,
bench_stream_memory): machine description, best-of timing, tables, RSS.

Not a test module; the scripts in this folder are run by hand (``python bench/NAME.py``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions(names: Iterable[str]) -> str:
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_report(packages: Iterable[str] = ("stable-discovery", "dynamicprompts", "lark", "numpy")) -> str:
    load = os.getloadavg()
    lines = [
        f"machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), CPU {cpu_model()}, "
        f"Linux {platform.release()}",
        f"python:  {sys.version.split()[0]} ({platform.python_implementation()})",
        f"packages: {versions(packages)}",
        f"commit:  {git_commit()}; load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    ]
    return "\n".join(lines)


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """Run ``fn`` ``repeats`` times; the best wall time, all times, and the last result."""
    times: list[float] = []
    result = None
    if repeats <= 0:
        return float("inf"), times, result
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, result


def spread(times: list[float]) -> str:
    """How noisy the repeats were: worst / best."""
    return f"{max(times) / min(times):.2f}x"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, columns padded for reading in a terminal."""
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]

    def fmt(r: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(headers), sep] + [fmt(r) for r in rows])


def rss_kib(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out
