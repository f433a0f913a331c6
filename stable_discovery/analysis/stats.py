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
from stable_discovery.store.lookups import base_name, variable_kinds
from stable_discovery.store.stats_queries import ExperimentCounts, experiment_counts

__all__ = [
    "ValueStats",
    "StatsReport",
    "experiment_stats",
    "value_stats",
    "wilson",
    "fisher_greater",
    "stratified_greater",
    "benjamini_hochberg",
    "plot",
    "ABSENT",
    "Q_LEVEL",
    "TEST_NAME",
    "POOLED_TEST_NAME",
]

#: The text of the row for images that did not use a slot.
ABSENT = "(absent)"
#: The false discovery rate at which ``significant`` is set.
Q_LEVEL = 0.05
#: What ``p_value`` is, in words (the table's footnote, the JSON's ``test``).
#: The test of a report that pools several experiments.
POOLED_TEST_NAME = (
    "one-sided test of the value against the rest, experiment by experiment (exact, or "
    "Cochran-Mantel-Haenszel when large); Benjamini-Hochberg across all values tested, q < 0.05"
)
TEST_NAME = (
    "one-sided Fisher exact test of the value against the rest of the experiment; "
    "Benjamini-Hochberg across all values tested, q < 0.05"
)
_Z95 = 1.959963984540054

_SETTING_LINE = re.compile(r"^[ \t]*@([A-Za-z_][A-Za-z0-9_]*)[ \t]*=", re.M)


@dataclass(frozen=True)
class ValueStats:
    """One value of a traced variable, with its favourite statistics.

    ``kind`` is the variable's (``slot``, ``setting``, ``choice``, ``optional``, ``item``,
    ``count``, ``wildcard``, ``file``: :data:`stable_discovery.language.variables.KINDS`);
    ``index`` the value's trace index (the alternative's position as written; -1 for the
    ``(absent)`` row); ``text`` the value as traced (the alternative as written).
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
        """True for the row of images without the variable (an optional part or item
        left out, a slot or choice not reached)."""
        return self.index == -1

    @property
    def label(self) -> str:
        """``name: value``, ``@setting: value``, ``name (absent)``, or a multi-select item's
        name alone (``prompt{1}+freckles``: present), for tables and plots."""
        prefix = "@" + self.name if self.kind == "setting" else self.name
        if self.absent:
            return f"{prefix} {ABSENT}"
        return prefix if self.kind == "item" else f"{prefix}: {self.text}"

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
    experiments: tuple[str, ...] = ()  # the experiments pooled (one, usually)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "experiments": list(self.experiments or (self.experiment,)),
            "images": self.images,
            "favourites": self.favourites,
            "rejected": self.rejected,
            "base_rate": self.base_rate,
            "include_rejected": self.include_rejected,
            "min_stars": self.min_stars,
            "tested": self.tested,
            "test": self.test,
            "values": [v.to_dict() for v in self.values],
        }

    @property
    def test(self) -> str:
        """What ``p_value`` is, in words."""
        return POOLED_TEST_NAME if len(self.experiments) > 1 else TEST_NAME

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


#: One experiment's part of a row: (images with the value, winners among them, the
#: experiment's images, its winners).
Stratum = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Row:
    """A value (or a variable's absent row) with its counts, and for each experiment that
    has its variable the counts it is compared with there (one stratum per experiment)."""

    name: str
    kind: str
    index: int
    text: str
    images: int  # the images that count (rejected ones left out unless asked)
    winners: int
    rejected: int
    strata: tuple[Stratum, ...]

    @property
    def all_images(self) -> int:
        return sum(st[2] for st in self.strata)

    @property
    def expected(self) -> float:
        """Winners expected with this value if it made no difference: in each experiment,
        its images times the experiment's base rate."""
        return sum(n * big_k / big_n for n, _, big_n, big_k in self.strata if big_n > 0)


@dataclass(frozen=True)
class _Counted:
    """One experiment's counts and the kinds of its variables."""

    experiment: Experiment
    counts: ExperimentCounts
    kinds: dict[str, str]
    settings: set[str]

    def kind(self, name: str) -> str:
        """A variable's kind: as recorded with the experiment; for one recorded before
        kinds were, a sampled setting or a slot (all that was traced then)."""
        base = base_name(name)
        kind = self.kinds.get(base)
        if kind is not None:
            return kind
        return "setting" if base in self.settings else "slot"


def _resolve(store: Store, experiment: str | Experiment) -> Experiment:
    if isinstance(experiment, Experiment):
        return experiment
    return store.require(experiment)


def setting_names(template_text: str) -> set[str]:
    """The names of the settings a template defines (``@name = …`` lines)."""
    return set(_SETTING_LINE.findall(template_text))


def _images(done: int, rejected: int, include_rejected: bool) -> int:
    return done if include_rejected else done - rejected


def _per_experiment(
    counted: Sequence[_Counted],
) -> tuple[dict[tuple[str, str], dict[int, list[int]]], dict[str, set[int]]]:
    """Per (name, text), per experiment: [index, total, winners, rejected]; and per name,
    the experiments that have the variable (it was traced there, or recorded with them)."""
    values: dict[tuple[str, str], dict[int, list[int]]] = {}
    known: dict[str, set[int]] = {}
    for i, c in enumerate(counted):
        for v in c.counts.values:
            values.setdefault((v.name, v.text), {})[i] = [v.choice, v.total, v.winners, v.rejected]
            known.setdefault(v.name, set()).add(i)
        names = set(c.kinds)
        for name in known:
            if base_name(name) in names:
                known[name].add(i)
    return values, known


def _rows(counted: Sequence[_Counted], include_rejected: bool) -> list[_Row]:
    """One row per value, then an ``(absent)`` row for each variable (not a setting) that
    some images lack. Each value is compared, experiment by experiment, with the images
    of the experiments that have its variable (all of them when there is one)."""
    values, known = _per_experiment(counted)
    totals = [
        (_images(c.counts.done, c.counts.rejected, include_rejected), c.counts.winners, c.counts.rejected)
        for c in counted
    ]
    kinds = {name: counted[min(exps)].kind(name) for name, exps in known.items()}
    rows = []
    present: dict[str, dict[int, list[int]]] = {}  # name → experiment → images, winners, rejected, total
    for (name, text), per in values.items():
        index = per[min(per)][0]
        strata: list[Stratum] = []
        for i in sorted(known[name]):
            _, total, winners, rejected = per.get(i, (0, 0, 0, 0))
            n = total if include_rejected else total - rejected
            strata.append((n, winners, totals[i][0], totals[i][1]))
            acc = present.setdefault(name, {}).setdefault(i, [0, 0, 0, 0])
            for k, add in enumerate((n, winners, rejected, total)):
                acc[k] += add
        n_all = sum(st[0] for st in strata)
        k_all = sum(st[1] for st in strata)
        rejected_all = sum(per[i][3] for i in per)
        rows.append(_Row(name, kinds[name], index, text, n_all, k_all, rejected_all, tuple(strata)))
    for name, per_exp in present.items():
        if kinds[name] == "setting" or all(acc[3] >= counted[i].counts.done for i, acc in per_exp.items()):
            continue
        absent = tuple(
            (totals[i][0] - acc[0], totals[i][1] - acc[1], totals[i][0], totals[i][1])
            for i, acc in sorted(per_exp.items())
        )
        rejected = sum(totals[i][2] - acc[2] for i, acc in per_exp.items())
        n_all = sum(st[0] for st in absent)
        k_all = sum(st[1] for st in absent)
        rows.append(_Row(name, kinds[name], -1, ABSENT, n_all, k_all, rejected, absent))
    return rows


def stratified_greater(k: int, strata: Sequence[tuple[int, int, int]]) -> float:
    """One-sided p-value of ``k`` winners or more among the images with a value, when
    in each experiment (``(n, K, N)``: images with the value, its winners, its images)
    they are a random draw of its images: ``P(sum X_e >= k)``, ``X_e ~
    Hypergeometric(N, K, n)``. One stratum is :func:`fisher_greater`; several are
    convolved exactly when that is small work, else approximated by the normal
    distribution with a continuity correction (the Cochran–Mantel–Haenszel test)."""
    if len(strata) == 1:
        n, big_k, big_n = strata[0]
        return fisher_greater(k, n, big_k, big_n)
    sizes = [min(n, big_k) - max(0, n + big_k - big_n) + 1 for n, big_k, big_n in strata]
    if math.prod(sizes) <= 2_000_000 or sum(sizes) * max(sizes) <= 2_000_000:
        return _convolved_tail(k, strata)
    mean = sum(n * big_k / big_n for n, big_k, big_n in strata if big_n > 0)
    var = sum(
        n * big_k * (big_n - big_k) * (big_n - n) / (big_n * big_n * (big_n - 1))
        for n, big_k, big_n in strata
        if big_n > 1
    )
    if var <= 0:
        return 1.0 if k <= mean else 0.0
    z = (k - 0.5 - mean) / math.sqrt(var)
    return min(1.0, 0.5 * math.erfc(z / math.sqrt(2)))


def _convolved_tail(k: int, strata: Sequence[tuple[int, int, int]]) -> float:
    """``P(sum X_e >= k)`` by convolving the hypergeometric distributions."""
    dist = [1.0]  # probabilities of the sum, from offset 0
    offset = 0
    for n, big_k, big_n in strata:
        lo, hi = max(0, n + big_k - big_n), min(n, big_k)
        base = _log_comb(big_n, n)
        pmf = [
            math.exp(_log_comb(big_k, x) + _log_comb(big_n - big_k, n - x) - base) for x in range(lo, hi + 1)
        ]
        new = [0.0] * (len(dist) + len(pmf) - 1)
        for i, a in enumerate(dist):
            if a:
                for j, b in enumerate(pmf):
                    new[i + j] += a * b
        dist, offset = new, offset + lo
    start = max(0, k - offset)
    return min(1.0, sum(dist[start:]))


def _significance(rows: Sequence[_Row]) -> tuple[list[float], list[float], int]:
    """Each row's p-value and q-value, and how many rows were tested: a value present in
    every image it is compared with (or in none) is not, and keeps p = q = 1."""
    tested = [i for i, r in enumerate(rows) if 0 < r.images < r.all_images]
    pvalues = [1.0] * len(rows)
    for i in tested:
        r = rows[i]
        pvalues[i] = stratified_greater(r.winners, [(n, big_k, big_n) for n, _, big_n, big_k in r.strata])
    qvalues = [1.0] * len(rows)
    for i, q in zip(tested, benjamini_hochberg([pvalues[i] for i in tested]), strict=False):
        qvalues[i] = q
    return pvalues, qvalues, len(tested)


def _value_stats(row: _Row, p: float, q: float) -> ValueStats:
    rate = row.winners / row.images if row.images > 0 else 0.0
    low, high = wilson(row.winners, row.images)
    expected = row.expected
    return ValueStats(
        name=row.name,
        kind=row.kind,
        index=row.index,
        text=row.text,
        images=row.images,
        favourites=row.winners,
        rejected=row.rejected,
        rate=rate,
        low=low,
        high=high,
        lift=row.winners / expected if expected > 0 else 1.0,
        p_value=p,
        q_value=q,
        significant=q < Q_LEVEL,
    )


def _count(store: Store, exp: Experiment, min_stars: int | None) -> _Counted:
    counts = experiment_counts(store.db, exp.id, min_stars)
    return _Counted(exp, counts, variable_kinds(store.db, exp.id), setting_names(exp.template_text))


def _check_pooled(counted: Sequence[_Counted]) -> None:
    """Experiments pooled together must be one lineage: share some traced variable."""
    if len(counted) < 2:
        return
    names = [set(map(base_name, (v.name for v in c.counts.values))) | set(c.kinds) for c in counted]
    if not set.intersection(*names):
        listed = ", ".join(repr(c.experiment.name) for c in counted)
        raise UsageError(
            f"{listed} have no traced variable in common: there is nothing to pool "
            "(pool a refined template's experiment with its parent's)"
        )


def experiment_stats(
    store: Store,
    experiment: str | Experiment | Sequence[str | Experiment],
    *,
    include_rejected: bool = False,
    min_stars: int | None = None,
) -> StatsReport:
    """Every value's statistics for an experiment (a name or an :class:`Experiment`), or
    for several pooled (a sequence of them: one lineage, e.g. a refined template's
    experiment and its parent's, whose variables share names).

    Raises :class:`~stable_discovery.errors.UsageError` for an unknown experiment, a
    ``min_stars`` outside 1..5, or experiments with no variable in common.
    """
    if min_stars is not None and not 1 <= min_stars <= 5:
        raise UsageError(f"--min-stars goes from 1 to 5, not {min_stars}")
    many: Sequence[str | Experiment] = (
        [experiment] if isinstance(experiment, (str, Experiment)) else list(experiment)
    )
    exps = list({e.name: e for e in (_resolve(store, e) for e in many)}.values())
    counted = [_count(store, exp, min_stars) for exp in exps]
    _check_pooled(counted)
    done = sum(c.counts.done for c in counted)
    rejected = sum(c.counts.rejected for c in counted)
    winners = sum(c.counts.winners for c in counted)
    images = _images(done, rejected, include_rejected)
    rows = _rows(counted, include_rejected)
    pvalues, qvalues, tested = _significance(rows)
    values = sorted(
        (_value_stats(*args) for args in zip(rows, pvalues, qvalues, strict=True)),
        key=lambda v: (-v.low, -v.rate, -v.images, v.name, v.index),
    )
    return StatsReport(
        experiment=" + ".join(e.name for e in exps),
        images=images,
        favourites=winners,
        rejected=rejected,
        base_rate=winners / images if images > 0 else 0.0,
        values=tuple(values),
        include_rejected=include_rejected,
        min_stars=min_stars,
        tested=tested,
        experiments=tuple(e.name for e in exps),
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
