"""What ``sdp run`` shows on standard error while it runs: where the images go, then a
progress bar."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from stable_discovery.run.runner import RunObserver
from stable_discovery.store.database import Experiment

__all__ = ["Progress", "ProgressObserver", "RunReport"]


class Progress:
    """A one-line progress bar on stderr: done/total, rate and time left."""

    def __init__(self, label: str, total: int, done: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.start_done = done
        self.done = done
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.last = 0.0
        self.last_pct = -1

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.1 or self.done >= self.total:
                self.last = now
                self.stream.write("\r" + self.line() + "\x1b[K")
                self.stream.flush()
        else:
            pct = int(100 * self.done / self.total) if self.total else 100
            if pct // 10 != self.last_pct // 10 or self.done >= self.total:
                self.last_pct = pct
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        made = self.done - self.start_done
        rate = made / elapsed
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 else "?"
        pct = 100 * self.done / self.total if self.total else 100.0
        width = 24
        filled = int(width * pct / 100)
        bar = "#" * filled + "-" * (width - filled)
        return f"{self.label} [{bar}] {self.done}/{self.total} {pct:5.1f}%  {rate:.2f} img/s  ETA {eta}"

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressObserver(RunObserver):
    """Draws a run's :class:`Progress`, labelled with the experiment's name, on
    ``stream`` (default: standard error as it is when generation begins). Its clock
    starts when the backend is ready, so loading a model does not count in the rate."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.label = ""
        self.bar: Progress | None = None

    def started(self, experiment: Experiment, folder: Path) -> None:
        self.label = experiment.name

    def generating(self, done: int, total: int) -> None:
        self.bar = Progress(self.label, total, done, self.stream)

    def progress(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.done)

    def shrunk(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        if self.bar is not None and self.bar.tty:
            stream.write("\r\x1b[K")  # the bar's line; it is drawn again at the next batch
        stream.write(f"batch auto: {text}\n")
        stream.flush()

    def generated(self) -> None:
        if self.bar is not None:
            self.bar.close()


class RunReport(ProgressObserver):
    """``sdp run``'s report: a line saying where the images go, then the progress bar.
    It remembers the experiment and how many images are done, for a message that says
    how to resume when the run fails."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self.experiment: Experiment | None = None
        self.done: int | None = None

    def missing(self, experiment: Experiment, names: list[str]) -> None:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3:,} more" if len(names) > 3 else "")
        sys.stderr.write(
            f"experiment {experiment.name}: {len(names):,} "
            + ("image is" if len(names) == 1 else "images are")
            + f" missing from its folder ({shown}); making "
            + ("it" if len(names) == 1 else "them")
            + " again\n"
        )

    def started(self, experiment: Experiment, folder: Path) -> None:
        self.experiment = experiment
        sys.stderr.write(
            f"experiment {experiment.name}: {experiment.done} of {experiment.count} done, "
            f"images in {folder}\n"
        )
        super().started(experiment, folder)

    def progress(self, done: int, total: int) -> None:
        self.done = done
        super().progress(done, total)
