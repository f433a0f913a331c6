"""Weights learned from an experiment's favourites: shrunk estimates per value.

Used by ``sdp refine`` (written into the next template) and by the ``exploit`` sampler
(applied inside a run); both give the same weights.

The estimate for a value seen on ``n`` images, ``f`` of them favourites, in an
experiment whose base rate is ``p0 = F / N``:

* **shrunk rate** ``r = (f + k·p0) / (n + k)``: the posterior mean under a
  Beta(k·p0, k·(1−p0)) prior centred on the base rate. ``k = max(10, m / p0)`` images,
  where ``m`` (``prior``, default 2) is the prior's worth in favourites: a value seen
  twice with two favourites moves only a little, one seen 200 times moves a lot.
* **factor** ``(r / p0) ** strength``: how much more (or less) often the value should be
  sampled. ``strength`` 1 is the plain ratio; 0 changes nothing; 2 is greedier.
* the new weight of an alternative is **its template weight × factor**; refine writes
  them normalised to percentages per variable. Values never seen have factor 1.
* something present or absent — an optional part, a multi-select item — gets the
  weight ``w · factor(present) / factor(absent)`` (``[w::x]``), from the images with and
  without it. (For an experiment traced before optional parts were, an optional part
  whose slot is used nowhere else is weighed by that slot's presence.)

Rows are matched to the template by variable name and the value's text as written, so an
edited template (values added, removed or moved) still gets the right weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stable_discovery.analysis.stats import StatsReport, ValueStats, experiment_stats, wilson
from stable_discovery.errors import Source, UsageError
from stable_discovery.language.parser import parse
from stable_discovery.language.syntax import Definition
from stable_discovery.store.database import Experiment, Store

__all__ = ["Estimate", "Learned", "learn", "learn_from_report", "DEFAULT_PRIOR", "MIN_PRIOR_IMAGES"]

#: The prior's default worth, in favourites (``m``).
DEFAULT_PRIOR = 2.0
#: The prior is worth at least this many images (``k >= 10``).
MIN_PRIOR_IMAGES = 10.0


@dataclass(frozen=True)
class Estimate:
    """One value's counts and what they imply: shrunk rate and sampling factor."""

    images: int
    favourites: int
    rate: float  # raw favourites / images
    shrunk: float  # (favourites + k·p0) / (images + k)
    factor: float  # (shrunk / p0) ** strength
    high: float  # upper bound of the 95% Wilson interval (for --drop)
    loses: bool  # seen, and the whole interval is below the base rate


@dataclass(frozen=True)
class Learned:
    """What an experiment's favourites say, keyed by slot/setting and text as written."""

    experiment: str
    images: int
    favourites: int
    rejected: int
    base_rate: float
    k: float
    prior: float
    strength: float
    sampler: str
    include_rejected: bool = False
    min_stars: int | None = None
    values: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    presences: dict[str, tuple[Estimate, Estimate]] = field(default_factory=dict)

    def factor(self, name: str, text: str) -> float:
        """The sampling factor of a value (1 when it was never seen)."""
        est = self.values.get(name, {}).get(text)
        return est.factor if est is not None else 1.0

    def presence(self, name: str) -> float:
        """How much more (or less) often something present or absent should be present:
        factor(present) / factor(absent); 1 when it was present in every image, or never
        seen."""
        both = self.presences.get(name)
        if both is None:
            return 1.0
        present, absent = both
        return present.factor / absent.factor if absent.factor > 0 else 1.0


def _prior_images(base: float, prior: float) -> float:
    return max(MIN_PRIOR_IMAGES, prior / base) if base > 0 else MIN_PRIOR_IMAGES


def _estimate(images: int, favourites: int, high: float, base: float, k: float, strength: float) -> Estimate:
    shrunk = (favourites + k * base) / (images + k)
    factor = (shrunk / base) ** strength if base > 0 else 1.0
    return Estimate(
        images=images,
        favourites=favourites,
        rate=favourites / images if images else 0.0,
        shrunk=shrunk,
        factor=factor,
        high=high,
        loses=images > 0 and high < base,
    )


def template_alternatives(text: str, name: str = "<template>") -> dict[tuple[bool, str], Definition]:
    """The definitions of a template by (is_setting, name); parse errors propagate."""
    return {(d.is_setting, d.name): d for d in parse(Source(name, text)).definitions}


def learn_from_report(
    report: StatsReport,
    template_text: str | None = None,
    *,
    sampler: str = "random",
    strength: float = 1.0,
    prior: float = DEFAULT_PRIOR,
) -> Learned:
    """Estimates from a stats report, keyed by variable name and value text (the
    template text is no longer needed: the rows carry the values as written)."""
    if strength < 0:
        raise UsageError(f"--strength must be 0 or more, not {strength}")
    if prior < 0:
        raise UsageError(f"--prior must be 0 or more, not {prior}")
    if report.favourites == 0:
        raise UsageError(
            f"{report.experiment!r} has no favourites among its {report.images:,} images yet: "
            f"mark some first (sdp fav {report.experiment} INDEX..., or in the gallery)"
        )
    base = report.base_rate
    k = _prior_images(base, prior)
    values: dict[str, dict[str, Estimate]] = {}
    presences: dict[str, tuple[Estimate, Estimate]] = {}
    absent_rows: list[ValueStats] = []
    present_counts: dict[str, list[int]] = {}
    for row in report.values:
        if row.absent:
            absent_rows.append(row)
            continue
        values.setdefault(row.name, {})[row.text] = _estimate(
            row.images, row.favourites, row.high, base, k, strength
        )
        acc = present_counts.setdefault(row.name, [0, 0])
        acc[0] += row.images
        acc[1] += row.favourites
    for row in absent_rows:
        n, f = present_counts.get(row.name, (0, 0))
        present = _estimate(n, f, wilson(f, n)[1], base, k, strength)
        absent = _estimate(row.images, row.favourites, row.high, base, k, strength)
        presences[row.name] = (present, absent)
    return Learned(
        experiment=report.experiment,
        images=report.images,
        favourites=report.favourites,
        rejected=report.rejected,
        base_rate=base,
        k=k,
        prior=prior,
        strength=strength,
        sampler=sampler,
        include_rejected=report.include_rejected,
        min_stars=report.min_stars,
        values=values,
        presences=presences,
    )


def learn(
    store: Store,
    experiment: str | Experiment,
    *,
    strength: float = 1.0,
    prior: float = DEFAULT_PRIOR,
    include_rejected: bool = False,
    min_stars: int | None = None,
) -> Learned:
    """Estimates from an experiment's favourites (see the module docstring)."""
    exp = experiment if isinstance(experiment, Experiment) else store.require(experiment)
    report = experiment_stats(store, exp, include_rejected=include_rejected, min_stars=min_stars)
    return learn_from_report(report, exp.template_text, sampler=exp.sampler, strength=strength, prior=prior)
