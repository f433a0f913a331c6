"""A forest plot of favourite rates, drawn with Pillow (no plotting library needed).

One row per value: its label on the left, the 95% interval as a bar and the rate as a
dot in the middle, ``favourites/images`` on the right. A dashed line marks the base
rate. Green rows are significant winners; red rows clearly lose (the whole interval is
below the base rate); the rest are blue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

__all__ = ["draw"]

WIDTH = 1200
LABEL_W = 430
COUNT_W = 120
MARGIN = 16
ROW_H = 24
TOP = 84
BOTTOM = 52

WHITE = (255, 255, 255)
INK = (33, 37, 41)
GRID = (222, 226, 230)
MUTED = (108, 117, 125)
BASE = (214, 51, 132)
WIN = (25, 135, 84)
LOSE = (220, 53, 69)
NEUTRAL = (13, 110, 253)
STRIPE = (248, 249, 250)


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if draw.textlength(text[:mid] + "…", font=font) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def _axis_max(values: Sequence[Any], base: float | None) -> float:
    top: float = max([v.high for v in values] + [base or 0.0, 0.01])
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0):
        if top <= step * 5:
            return min(1.0, -(-top // step) * step)
    return 1.0


def _ticks(xmax: float) -> list[float]:
    for step in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25):
        if xmax / step <= 10:
            break
    ticks, t = [], 0.0
    while t <= xmax + 1e-12:
        ticks.append(round(t, 6))
        t += step
    return ticks


def _pct(x: float) -> str:
    text = f"{x * 100:.1f}".rstrip("0").rstrip(".")
    return text + "%"


@dataclass(frozen=True)
class _Frame:
    """Where things go: the rate axis from ``x0`` (rate 0) to ``x1`` (rate ``xmax``),
    rows from ``TOP`` down to ``bottom``."""

    x0: int
    x1: int
    xmax: float
    bottom: int

    def x(self, rate: float) -> float:
        return self.x0 + (self.x1 - self.x0) * min(max(rate, 0.0), self.xmax) / self.xmax


@dataclass(frozen=True)
class _Fonts:
    text: Any
    small: Any
    bold: Any


def draw(
    rows: Sequence[Any],
    path: Path,
    *,
    base_rate: float | None = None,
    title: str | None = None,
    limit: int = 60,
) -> Path:
    """Write the plot of ``rows`` (ValueStats) to ``path`` as a PNG; returns the path."""
    shown = list(rows[: max(0, limit)])
    hidden = len(rows) - len(shown)
    n = max(1, len(shown))
    height = TOP + n * ROW_H + BOTTOM + (ROW_H if hidden else 0)
    img = Image.new("RGB", (WIDTH, height), WHITE)
    d = ImageDraw.Draw(img)
    fonts = _Fonts(_font(14), _font(12), _font(16))
    frame = _Frame(LABEL_W, WIDTH - COUNT_W - MARGIN, _axis_max(shown, base_rate), TOP + n * ROW_H)

    _header(d, fonts, frame, title)
    _grid(d, fonts, frame, n)
    if base_rate is not None:
        _base_line(d, fonts, frame, base_rate)
    for i, v in enumerate(shown):
        _row(d, fonts, frame, TOP + i * ROW_H + ROW_H // 2, v, base_rate)
    if not shown:
        d.text((frame.x0, TOP + 4), "no values to show", fill=MUTED, font=fonts.text)
    if hidden:
        d.text(
            (MARGIN + 4, frame.bottom + 28),
            f"… and {hidden:,} more values (see sdp stats)",
            fill=MUTED,
            font=fonts.small,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def _header(d: ImageDraw.ImageDraw, fonts: _Fonts, frame: _Frame, title: str | None) -> None:
    """The title, the legend line and the heading of the counts column."""
    d.text(
        (MARGIN, 12),
        _fit(d, title or "favourite rate by value", fonts.bold, WIDTH - 2 * MARGIN),
        fill=INK,
        font=fonts.bold,
    )
    d.text(
        (MARGIN, 38),
        "favourite rate with its 95% Wilson interval; green: significant winner "
        "(BH q < 0.05); red: interval below the base rate",
        fill=MUTED,
        font=fonts.small,
    )
    d.text((frame.x1 + 10, TOP - 18), "favs/images", fill=MUTED, font=fonts.small)


def _grid(d: ImageDraw.ImageDraw, fonts: _Fonts, frame: _Frame, n: int) -> None:
    """Stripes behind every other row, a line and a label at each tick, the x axis."""
    for i in range(0, n, 2):
        y = TOP + i * ROW_H
        d.rectangle([MARGIN, y, WIDTH - MARGIN, y + ROW_H - 1], fill=STRIPE)
    for t in _ticks(frame.xmax):
        x = frame.x(t)
        d.line([(x, TOP), (x, frame.bottom)], fill=GRID, width=1)
        label = _pct(t)
        w = d.textlength(label, font=fonts.small)
        d.text((x - w / 2, frame.bottom + 6), label, fill=MUTED, font=fonts.small)
    d.line([(frame.x0, frame.bottom), (frame.x1, frame.bottom)], fill=MUTED, width=1)


def _base_line(d: ImageDraw.ImageDraw, fonts: _Fonts, frame: _Frame, base_rate: float) -> None:
    """The dashed line of the base rate, labelled above the rows."""
    xb = frame.x(base_rate)
    y = TOP
    while y < frame.bottom:
        d.line([(xb, y), (xb, min(y + 5, frame.bottom))], fill=BASE, width=2)
        y += 9
    label = f"base {_pct(base_rate)}"
    w = d.textlength(label, font=fonts.small)
    d.text((min(max(xb - w / 2, frame.x0), frame.x1 - w), TOP - 18), label, fill=BASE, font=fonts.small)


def _colour(v: Any, base_rate: float | None) -> tuple[int, int, int]:
    """Green for a significant winner, red for a clear loser, blue otherwise."""
    if v.significant:
        return WIN
    if base_rate is not None and v.images > 0 and v.high < base_rate:
        return LOSE
    return NEUTRAL


def _row(
    d: ImageDraw.ImageDraw, fonts: _Fonts, frame: _Frame, cy: int, v: Any, base_rate: float | None
) -> None:
    """One value centred on ``cy``: label, interval, rate and counts."""
    colour = _colour(v, base_rate)
    label = _fit(d, v.label, fonts.text, frame.x0 - MARGIN - 12)
    d.text((MARGIN + 4, cy - 8), label, fill=INK if not v.absent else MUTED, font=fonts.text)
    if v.images > 0:
        d.line([(frame.x(v.low), cy), (frame.x(v.high), cy)], fill=colour, width=3)
        for edge in (v.low, v.high):
            xe = frame.x(edge)
            d.line([(xe, cy - 5), (xe, cy + 5)], fill=colour, width=2)
        xr = frame.x(v.rate)
        d.ellipse([xr - 5, cy - 5, xr + 5, cy + 5], fill=colour, outline=WHITE)
    d.text((frame.x1 + 10, cy - 8), f"{v.favourites:,}/{v.images:,}", fill=INK, font=fonts.text)
