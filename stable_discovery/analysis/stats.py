"""Which slot values produce winners: favourite rates per value, with intervals and tests.

``experiment_stats(store, experiment)`` (the whole report) and ``value_stats(store,
experiment)`` (its rows) look at an experiment's done samples and, for every value of
every traced slot and sampled setting, count images and favourites. Each row has:

* ``rate``: favourites / images, with a 95% **Wilson score interval** ``low``..``high``;
* ``lift``: ``rate`` / the experiment's base rate (all favourites / all images);
* ``p_value``: a **one-sided Fisher exact test** (hypergeometric upper tail) of "images
  with this value are favourites more often than images without it" — the value
  against the rest of the experiment, so it flags winners only;
* ``q_value`` and ``significant``: the p-values adjusted by **Benjamini–Hochberg**
  across every value tested in the experiment; ``significant`` is ``q_value < 0.05``.
  A value present in every image (or in none) has nothing to be compared with: it gets
  ``p_value = q_value = 1`` and is not counted in the correction.

Rows are ranked by ``low`` (the pessimistic rate), best first.

A slot that some samples do not use (an optional part ``[, <style>]``, or a slot inside
an alternative of another slot) also gets a row ``index = -1``, ``text = "(absent)"``
for the images without it, so one can tell whether a suffix helps at all.

Rejected images are **left out** of every count (images, favourites, the base rate): a
rejection usually says an image is broken (a black safety-checker image, artefacts),
not that its prompt lost. Each row still reports how many of its images were rejected
(``rejected``). ``include_rejected=True`` counts them as images that are not favourites.

A *winner* is an image marked favourite; with ``min_stars=N`` an image rated N stars or
more counts as well.

Counting is SQL aggregation over the run store (``GROUP BY`` on the ``choices`` index,
favourites joined from ``ratings``), so 100,000 samples take well under a second.
:func:`plot` draws the rows as a PNG (Pillow only; see :mod:`.stats_plot`).
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
# counting in the store


@dataclass
class _Count:
    text: str = ""
    total: int = 0  # done samples with the value, rejected or not
    favourites: int = 0  # winners among the samples that count
    rejected: int = 0


def _winner_sql(min_stars: int | None) -> str:
    if min_stars is None:
        return "r.favourite = 1"
    return f"(r.favourite = 1 OR COALESCE(r.stars, 0) >= {int(min_stars)})"


def _counts(
    store: Store, exp: Experiment, min_stars: int | None
) -> tuple[dict[tuple[str, int], _Count], int, int, int]:
    """Per (name, index) counts, and the experiment's done, rejected and winner totals."""
    db = store.db
    eid = exp.id
    counts: dict[tuple[str, int], _Count] = {}
    # choices rows exist only for done samples (Store.record_done writes both at once),
    # so this runs on the (experiment_id, name, choice) index alone
    for name, choice, n in db.execute(
        "SELECT name, choice, COUNT(*) FROM choices WHERE experiment_id = ? GROUP BY name, choice",
        (eid,),
    ):
        counts[(name, choice)] = _Count(total=n)
    for key, c in counts.items():
        row = db.execute(
            "SELECT text FROM choices WHERE experiment_id = ? AND name = ? AND choice = ? LIMIT 1",
            (eid, key[0], key[1]),
        ).fetchone()
        c.text = row[0] if row else ""
    counted = " AND r.rejected = 0"  # a rejected image is never a winner
    done_join = "JOIN samples s ON s.experiment_id = r.experiment_id AND s.idx = r.idx AND s.status = 'done'"
    winner = _winner_sql(min_stars)
    for name, choice, n in db.execute(
        f"SELECT c.name, c.choice, COUNT(*) FROM ratings r {done_join} "
        "JOIN choices c ON c.experiment_id = r.experiment_id AND c.idx = r.idx "
        f"WHERE r.experiment_id = ? AND {winner}{counted} GROUP BY c.name, c.choice",
        (eid,),
    ):
        if (name, choice) in counts:
            counts[(name, choice)].favourites = n
    for name, choice, n in db.execute(
        f"SELECT c.name, c.choice, COUNT(*) FROM ratings r {done_join} "
        "JOIN choices c ON c.experiment_id = r.experiment_id AND c.idx = r.idx "
        "WHERE r.experiment_id = ? AND r.rejected = 1 GROUP BY c.name, c.choice",
        (eid,),
    ):
        if (name, choice) in counts:
            counts[(name, choice)].rejected = n
    done = store.done_count(eid)
    rejected, winners = db.execute(
        f"SELECT COALESCE(SUM(r.rejected), 0), COALESCE(SUM(CASE WHEN {winner}{counted} THEN 1 ELSE 0 END), 0) "
        f"FROM ratings r {done_join} WHERE r.experiment_id = ?",
        (eid,),
    ).fetchone()
    return counts, done, int(rejected), int(winners)


def _resolve(store: Store, experiment: str | Experiment) -> Experiment:
    if isinstance(experiment, Experiment):
        return experiment
    return store.require(experiment)


def setting_names(template_text: str) -> set[str]:
    """The names of the settings a template defines (``@name = …`` lines)."""
    return set(_SETTING_LINE.findall(template_text))


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
    counts, done, rejected, F = _counts(store, exp, min_stars)
    N = done if include_rejected else done - rejected
    base = F / N if N > 0 else 0.0
    settings = setting_names(exp.template_text)

    rows: list[tuple[str, int, str, int, int, int]] = []  # name, index, text, n, k, rejected
    present: dict[str, list[int]] = {}
    for (name, index), c in counts.items():
        n = c.total if include_rejected else c.total - c.rejected
        rows.append((name, index, c.text, n, c.favourites, c.rejected))
        acc = present.setdefault(name, [0, 0, 0, 0])
        acc[0] += n
        acc[1] += c.favourites
        acc[2] += c.rejected
        acc[3] += c.total
    for name, (n, k, rej, total) in present.items():
        if total < done and name not in settings:
            rows.append((name, -1, ABSENT, N - n, F - k, rejected - rej))

    tested = [i for i, r in enumerate(rows) if 0 < r[3] < N]
    pvalues = [1.0] * len(rows)
    for i in tested:
        _, _, _, n, k, _ = rows[i]
        pvalues[i] = fisher_greater(k, n, F, N)
    qvalues = [1.0] * len(rows)
    for i, q in zip(tested, benjamini_hochberg([pvalues[i] for i in tested]), strict=False):
        qvalues[i] = q

    values = []
    for (name, index, text, n, k, rej), p, q in zip(rows, pvalues, qvalues, strict=False):
        rate = k / n if n > 0 else 0.0
        low, high = wilson(k, n)
        values.append(
            ValueStats(
                name=name,
                kind="setting" if name in settings else "slot",
                index=index,
                text=text,
                images=n,
                favourites=k,
                rejected=rej,
                rate=rate,
                low=low,
                high=high,
                lift=rate / base if base > 0 else 1.0,
                p_value=p,
                q_value=q,
                significant=q < Q_LEVEL,
            )
        )
    values.sort(key=lambda v: (-v.low, -v.rate, -v.images, v.name, v.index))
    return StatsReport(
        experiment=exp.name,
        images=N,
        favourites=F,
        rejected=rejected,
        base_rate=base,
        values=tuple(values),
        include_rejected=include_rejected,
        min_stars=min_stars,
        tested=len(tested),
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
