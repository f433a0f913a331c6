"""Which traced values produce winners: favourite rates per value, with intervals and tests.

``experiment_stats(store, experiment)`` (the whole report) and ``value_stats(store,
experiment)`` (its rows) count images and winners for every value of every traced slot
and sampled setting, from :mod:`stable_discovery.store.stats_queries`. Each row carries
a Wilson score interval, its lift over the base rate, a one-sided Fisher exact test and
a Benjamini–Hochberg q-value; rows are ranked by the interval's low end. What each
figure means, how rejected images and absent optional parts count, and what a winner
is: docs/stats-refine.md. :func:`plot` draws the rows as a PNG (:mod:`.plot`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stable_discovery.errors import UsageError
from stable_discovery.store.database import Experiment, Store
from stable_discovery.store.stats_queries import ExperimentCounts, experiment_counts

__all__ = [
    "ValueStats",
    "StatsReport",
    "experiment_stats",
    "value_stats",
    "wilson",
    "fisher_greater",
    "benjamini_hochberg",
    "plot",
    "ABSENT",
    "Q_LEVEL",
    "TEST_NAME",
]

#: The text of the row for images that did not use a slot.
ABSENT = "(absent)"
#: The false discovery rate at which ``significant`` is set.
Q_LEVEL = 0.05
#: What ``p_value`` is, in words (the table's footnote, the JSON's ``test``).
TEST_NAME = (
    "one-sided Fisher exact test of the value against the rest of the experiment; "
    "Benjamini-Hochberg across all values tested, q < 0.05"
)
_Z95 = 1.959963984540054

_SETTING_LINE = re.compile(r"^[ \t]*@([A-Za-z_][A-Za-z0-9_]*)[ \t]*=", re.M)


@dataclass(frozen=True)
class ValueStats:
    """One value of a slot or sampled setting, with its favourite statistics.

    ``kind`` is ``"slot"`` or ``"setting"``; ``index`` the alternative's position in the
    definition (-1 for the ``(absent)`` row); ``text`` the alternative as traced.
    ``images`` and ``favourites`` exclude rejected images (unless asked otherwise);
    ``rejected`` counts this value's rejected images.
    """

    name: str
    kind: str
    index: int
    text: str
    images: int
    favourites: int
    rejected: int
    rate: float
    low: float
    high: float
    lift: float
    p_value: float
    q_value: float
    significant: bool

    @property
    def absent(self) -> bool:
        """True for the row of images that did not use the slot."""
        return self.index == -1

    @property
    def label(self) -> str:
        """``slot: value``, ``@setting: value`` or ``slot (absent)``, for tables and plots."""
        prefix = "@" + self.name if self.kind == "setting" else self.name
        return f"{prefix} {ABSENT}" if self.absent else f"{prefix}: {self.text}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (every field, plus ``absent``)."""
        d = asdict(self)
        d["absent"] = self.absent
        return d


@dataclass(frozen=True)
class StatsReport:
    """An experiment's statistics: its totals, base rate and one row per value."""

    experiment: str
    images: int
    favourites: int
    rejected: int
    base_rate: float
    values: tuple[ValueStats, ...] = field(default=())
    include_rejected: bool = False
    min_stars: int | None = None
    tested: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "images": self.images,
            "favourites": self.favourites,
            "rejected": self.rejected,
            "base_rate": self.base_rate,
            "include_rejected": self.include_rejected,
            "min_stars": self.min_stars,
            "tested": self.tested,
            "test": TEST_NAME,
            "values": [v.to_dict() for v in self.values],
        }

    def by_name(self) -> dict[str, dict[int, ValueStats]]:
        """Rows grouped by slot/setting name, then by alternative index (-1: absent)."""
        out: dict[str, dict[int, ValueStats]] = {}
        for v in self.values:
            out.setdefault(v.name, {})[v.index] = v
        return out


# ---------------------------------------------------------------------------------------
# the statistics themselves


def wilson(k: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95% by default).

    ``n == 0`` gives the uninformative ``(0.0, 1.0)``.
    """
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = (centre - half) / denom
    high = (centre + half) / denom
    return max(0.0, low), min(1.0, high)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_greater(k: int, n: int, K: int, N: int) -> float:
    """One-sided Fisher exact p-value: P(X >= k) for X ~ Hypergeometric(N, K, n).

    ``N`` images of which ``K`` are favourites; ``n`` images have the value, ``k`` of
    them favourites. Small p: the value's favourite rate is above the rest's.
    """
    if not (0 <= k <= n <= N and 0 <= K <= N):
        raise ValueError(f"not a 2x2 table: k={k}, n={n}, K={K}, N={N}")
    lo = max(0, n + K - N)
    hi = min(n, K)
    if k <= lo:
        return 1.0
    if k > hi:
        return 0.0
    base = _log_comb(N, n)
    logs = [_log_comb(K, x) + _log_comb(N - K, n - x) - base for x in range(k, hi + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
    return min(1.0, tail)


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (q-values), in the order given."""
    m = len(pvalues)
    if m == 0:
        return []
    order = sorted(range(m), key=lambda i: pvalues[i])
    q = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, pvalues[i] * m / rank)
        q[i] = min(1.0, running)
    return q


# ---------------------------------------------------------------------------------------
# the report


@dataclass(frozen=True)
class _Row:
    """A value (or a slot's absent row) with the counts that go into its statistics."""

    name: str
    index: int
    text: str
    images: int  # the images that count (rejected ones left out unless asked)
    winners: int
    rejected: int


def _resolve(store: Store, experiment: str | Experiment) -> Experiment:
    if isinstance(experiment, Experiment):
        return experiment
    return store.require(experiment)


def setting_names(template_text: str) -> set[str]:
    """The names of the settings a template defines (``@name = …`` lines)."""
    return set(_SETTING_LINE.findall(template_text))


def _rows(counts: ExperimentCounts, images: int, include_rejected: bool, settings: set[str]) -> list[_Row]:
    """One row per value, then an ``(absent)`` row for each slot some images lack.

    ``images`` is the experiment's count of images that count.
    """
    rows = []
    present: dict[str, list[int]] = {}  # name → images, winners, rejected, total
    for c in counts.values:
        n = c.total if include_rejected else c.total - c.rejected
        rows.append(_Row(c.name, c.choice, c.text, n, c.winners, c.rejected))
        acc = present.setdefault(c.name, [0, 0, 0, 0])
        acc[0] += n
        acc[1] += c.winners
        acc[2] += c.rejected
        acc[3] += c.total
    for name, (n, k, rej, total) in present.items():
        if total < counts.done and name not in settings:
            rows.append(_Row(name, -1, ABSENT, images - n, counts.winners - k, counts.rejected - rej))
    return rows


def _significance(rows: Sequence[_Row], winners: int, images: int) -> tuple[list[float], list[float], int]:
    """Each row's p-value and q-value, and how many rows were tested: a value present in
    every image (or in none) is not, and keeps p = q = 1."""
    tested = [i for i, r in enumerate(rows) if 0 < r.images < images]
    pvalues = [1.0] * len(rows)
    for i in tested:
        pvalues[i] = fisher_greater(rows[i].winners, rows[i].images, winners, images)
    qvalues = [1.0] * len(rows)
    for i, q in zip(tested, benjamini_hochberg([pvalues[i] for i in tested]), strict=False):
        qvalues[i] = q
    return pvalues, qvalues, len(tested)


def _value_stats(row: _Row, p: float, q: float, base: float, settings: set[str]) -> ValueStats:
    rate = row.winners / row.images if row.images > 0 else 0.0
    low, high = wilson(row.winners, row.images)
    return ValueStats(
        name=row.name,
        kind="setting" if row.name in settings else "slot",
        index=row.index,
        text=row.text,
        images=row.images,
        favourites=row.winners,
        rejected=row.rejected,
        rate=rate,
        low=low,
        high=high,
        lift=rate / base if base > 0 else 1.0,
        p_value=p,
        q_value=q,
        significant=q < Q_LEVEL,
    )


def experiment_stats(
    store: Store,
    experiment: str | Experiment,
    *,
    include_rejected: bool = False,
    min_stars: int | None = None,
) -> StatsReport:
    """Every value's statistics for an experiment (a name or an :class:`Experiment`).

    Raises :class:`~stable_discovery.errors.UsageError` for an unknown experiment or a
    ``min_stars`` outside 1..5.
    """
    if min_stars is not None and not 1 <= min_stars <= 5:
        raise UsageError(f"--min-stars goes from 1 to 5, not {min_stars}")
    exp = _resolve(store, experiment)
    counts = experiment_counts(store.db, exp.id, min_stars)
    images = counts.done if include_rejected else counts.done - counts.rejected
    base = counts.winners / images if images > 0 else 0.0
    settings = setting_names(exp.template_text)
    rows = _rows(counts, images, include_rejected, settings)
    pvalues, qvalues, tested = _significance(rows, counts.winners, images)
    values = sorted(
        (_value_stats(*args, base, settings) for args in zip(rows, pvalues, qvalues, strict=True)),
        key=lambda v: (-v.low, -v.rate, -v.images, v.name, v.index),
    )
    return StatsReport(
        experiment=exp.name,
        images=images,
        favourites=counts.winners,
        rejected=counts.rejected,
        base_rate=base,
        values=tuple(values),
        include_rejected=include_rejected,
        min_stars=min_stars,
        tested=tested,
    )


def value_stats(
    store: Store,
    experiment: str | Experiment,
    *,
    include_rejected: bool = False,
    min_stars: int | None = None,
) -> list[ValueStats]:
    """The rows of :func:`experiment_stats`, ranked by the interval's lower bound."""
    return list(
        experiment_stats(store, experiment, include_rejected=include_rejected, min_stars=min_stars).values
    )


def plot(
    stats: StatsReport | Iterable[ValueStats],
    path: str | Path,
    *,
    base_rate: float | None = None,
    title: str | None = None,
    limit: int = 60,
) -> Path:
    """Draw favourite rates with their 95% intervals into a PNG at ``path``.

    ``stats`` is a :class:`StatsReport` (its base rate and name are used) or rows from
    :func:`value_stats`; at most ``limit`` rows are drawn, in the order given.
    """
    from stable_discovery.analysis.plot import draw

    if isinstance(stats, StatsReport):
        rows = list(stats.values)
        if base_rate is None:
            base_rate = stats.base_rate
        if title is None:
            title = (
                f"{stats.experiment}: {stats.favourites:,} favourites among "
                f"{stats.images:,} images (base rate {stats.base_rate:.1%})"
            )
    else:
        rows = list(stats)
    return draw(rows, Path(path), base_rate=base_rate, title=title, limit=limit)
